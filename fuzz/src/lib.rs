//! What several fuzz targets share.

use storefront_domain::catalog::{Availability, Catalog, CatalogSpec, DEFAULT_CATALOG_TOML};

/// The built-in catalog, built once per fuzzing process.
pub fn catalog() -> &'static Catalog {
    static CATALOG: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| {
        let spec: CatalogSpec = toml::from_str(DEFAULT_CATALOG_TOML).expect("built-in catalog");
        Catalog::build(spec, |_| Availability::Available).expect("builds")
    })
}
