//! Any configuration and quantity priced for any product: no panic, no overflow; an accepted
//! price is non-negative line items whose amounts are quantity × unit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use storefront_domain::pricing::{normalize, price};
use storefront_fuzz::catalog;

fuzz_target!(|input: (u8, i64, &[u8])| {
    let (which, quantity, bytes) = input;
    let Ok(Value::Object(raw)) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let products = catalog().products();
    let product = &products[usize::from(which) % products.len()];
    // Priced as the quote use-case prices: the raw configuration, and its normalized form.
    let _ = price(product, quantity, &raw);
    let Ok(normalized) = normalize(&product.fields, &raw, "configuration") else {
        return;
    };
    if let Ok(lines) = price(product, quantity, &normalized.configuration) {
        for line in &lines {
            assert!(line.amount_minor >= 0 && line.unit_minor >= 0, "{line:?}");
            assert_eq!(
                line.quantity.checked_mul(line.unit_minor),
                Some(line.amount_minor)
            );
        }
        let total = lines
            .iter()
            .try_fold(0i64, |sum, l| sum.checked_add(l.amount_minor));
        assert!(total.is_some(), "the total fits");
    }
});
