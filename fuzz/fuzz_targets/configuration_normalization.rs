//! Any JSON object as a product configuration: normalization never panics, and what it accepts
//! is a fixed point (normalizing the normalized configuration changes nothing, warns nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use storefront_domain::catalog::{Availability, Catalog, CatalogSpec, DEFAULT_CATALOG_TOML};
use storefront_domain::pricing::normalize;

/// The built-in catalog, built once.
fn catalog() -> &'static Catalog {
    static CATALOG: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| {
        let spec: CatalogSpec = toml::from_str(DEFAULT_CATALOG_TOML).expect("built-in catalog");
        Catalog::build(spec, |_| Availability::Available).expect("builds")
    })
}

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
