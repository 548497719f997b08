//! Any JSON object as a product configuration: normalization never panics, and what it accepts
//! is a fixed point (normalizing the normalized configuration changes nothing, warns nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use storefront_domain::pricing::normalize;
use storefront_fuzz::catalog;

fuzz_target!(|input: (u8, &[u8])| {
    let (which, bytes) = input;
    let Ok(Value::Object(raw)) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let products = catalog().products();
    let product = &products[usize::from(which) % products.len()];
    if let Ok(first) = normalize(&product.fields, &raw, "configuration") {
        let again = normalize(&product.fields, &first.configuration, "configuration")
            .expect("a normalized configuration stays valid");
        assert_eq!(again.configuration, first.configuration);
        assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    }
});
