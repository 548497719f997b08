//! The catalog: what is for sale, how each product's configuration is shaped, and how it is
//! priced. Operators describe it in TOML (`CatalogSpec`); a built-in default ships with the
//! binary. Availability is decided by the application (which fulfillers are configured) and
//! recorded on each `Product`.

use crate::money::Currency;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};

/// The built-in catalog: the products of the reference APIs (docs/api.md, "Catalog").
pub const DEFAULT_CATALOG_TOML: &str = include_str!("default_catalog.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    /// Offer the built-in products too; a product of this file with a built-in's id replaces
    /// that one.
    #[serde(default)]
    pub include_builtin: bool,
    #[serde(default)]
    pub products: Vec<ProductSpec>,
}

impl CatalogSpec {
    /// The products this specification offers: its own, after the built-in ones when it
    /// includes them (in the built-in order, a replaced product keeping its place).
    pub fn over(self, builtin: CatalogSpec) -> CatalogSpec {
        if !self.include_builtin {
            return self;
        }
        let mut own = self.products;
        let mut products: Vec<ProductSpec> = builtin
            .products
            .into_iter()
            .map(|b| match own.iter().position(|p| p.id == b.id) {
                Some(i) => own.remove(i),
                None => b,
            })
            .collect();
        products.extend(own);
        CatalogSpec {
            include_builtin: false,
            products,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    /// Fulfilled inline: the order response carries the result.
    Instant,
    /// Fulfilled in the background: the order is polled until it is done.
    Async,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PricingModel {
    PerUse,
    PerMinute,
    PerHour,
    PerMonth,
}

impl PricingModel {
    /// How long one billing unit lasts; `None` for a per-use price, which buys no time.
    pub fn unit_seconds(self) -> Option<i64> {
        match self {
            Self::PerUse => None,
            Self::PerMinute => Some(60),
            Self::PerHour => Some(3_600),
            Self::PerMonth => Some(30 * 86_400),
        }
    }

    pub fn unit_label(self, units: i64) -> &'static str {
        match (self, units == 1) {
            (Self::PerUse, true) => "use",
            (Self::PerUse, false) => "uses",
            (Self::PerMinute, true) => "minute",
            (Self::PerMinute, false) => "minutes",
            (Self::PerHour, true) => "hour",
            (Self::PerHour, false) => "hours",
            (Self::PerMonth, true) => "month",
            (Self::PerMonth, false) => "months",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Addon {
    /// A boolean configuration field: when true, the add-on is charged per unit.
    pub field: String,
    pub unit_minor: i64,
    pub description: String,
}

/// A unit price that depends on an enum field (`vps`: the price per hour depends on `type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UnitPriceBy {
    pub field: String,
    pub prices: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    pub model: PricingModel,
    #[serde(default)]
    pub base_minor: i64,
    pub unit_minor: i64,
    pub currency: Currency,
    /// The integer configuration field that counts units (minutes, hours, months). Absent for
    /// `per_use`, where each order of quantity 1 is one use.
    #[serde(default)]
    pub unit_field: Option<String>,
    #[serde(default)]
    pub min_units: Option<i64>,
    #[serde(default)]
    pub max_units: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_minor_by: Option<UnitPriceBy>,
    #[serde(default)]
    pub addons: Vec<Addon>,
}

impl Pricing {
    /// The price in one line, as listings show it: `0.99 USD + 0.05 USD per minute`, or with
    /// per-variant prices `micro 0.02 USD, small 0.04 USD per hour by size`.
    pub fn summary(&self) -> String {
        let money = |minor| crate::money::display_minor(minor, &self.currency);
        let unit = self.model.unit_label(1);
        let per_unit = match &self.unit_minor_by {
            Some(by) => {
                let prices: Vec<String> = by
                    .prices
                    .iter()
                    .map(|(variant, minor)| format!("{variant} {}", money(*minor)))
                    .collect();
                format!("{} per {unit} by {}", prices.join(", "), by.field)
            }
            None => format!("{} per {unit}", money(self.unit_minor)),
        };
        if self.base_minor > 0 {
            format!("{} + {per_unit}", money(self.base_minor))
        } else {
            per_unit
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Integer,
    String,
    Boolean,
    Enum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringFormat {
    /// RFC 1123 host name label(s): letters, digits, hyphens, dots; at most 253 characters.
    Hostname,
    /// One OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
    SshPublicKey,
}

/// One configuration field of a product: its type, bounds and default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default)]
    pub minimum: Option<i64>,
    #[serde(default)]
    pub maximum: Option<i64>,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub max_length: Option<usize>,
    #[serde(default)]
    pub format: Option<StringFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProvisioningEstimate {
    pub min_seconds: u64,
    pub max_seconds: u64,
}

impl ProvisioningEstimate {
    /// An estimate from observed provisioning times (seconds, any order): the 10th and 90th
    /// percentiles, at least one second apart from nothing. Fewer than three observations say
    /// too little; then the catalog's estimate stands.
    pub fn from_history(
        mut seconds: Vec<i64>,
        fallback: Option<ProvisioningEstimate>,
    ) -> Option<ProvisioningEstimate> {
        if seconds.len() < 3 {
            return fallback;
        }
        seconds.sort_unstable();
        let at = |q: usize| seconds[(seconds.len() - 1) * q / 100].max(0) as u64;
        let min_seconds = at(10).max(1);
        Some(ProvisioningEstimate {
            min_seconds,
            max_seconds: at(90).max(min_seconds),
        })
    }
}

fn default_max_quantity() -> u32 {
    10
}

/// A product as the operator describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSpec {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub description: String,
    pub kind: ProductKind,
    /// Which fulfiller or provisioner delivers it (`offline-search`, `local`, or the name of an
    /// HTTP upstream from the configuration).
    pub fulfiller: String,
    pub pricing: Pricing,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub provisioning_estimate: Option<ProvisioningEstimate>,
    #[serde(default)]
    pub requires_install_configuration: bool,
    #[serde(default)]
    pub install_fields: Vec<FieldSpec>,
    #[serde(default)]
    pub management_capabilities: Vec<String>,
    #[serde(default = "default_max_quantity")]
    pub max_quantity: u32,
    /// The resources a machine of this product gets (and is held to, where the provisioner can).
    #[serde(default)]
    pub machine: Option<MachineSize>,
    /// Sizes that depend on a configuration field (an instance type): they replace `machine`.
    #[serde(default)]
    pub machine_by: Option<MachineSizeBy>,
}

/// What one machine gets: the provisioner enforces each where the host lets it (`/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MachineSize {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    /// Most processes (and threads) alive at once: a fork bomb stays inside its machine.
    #[serde(default = "default_max_processes")]
    pub max_processes: u32,
}

fn default_max_processes() -> u32 {
    4096
}

/// Machine sizes chosen by the value of one configuration field (an enum).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSizeBy {
    pub field: String,
    pub sizes: BTreeMap<String, MachineSize>,
}

/// A product as agents see it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub description: String,
    pub kind: ProductKind,
    pub pricing: Pricing,
    pub config_schema: Value,
    pub provisioning_estimate: Option<ProvisioningEstimate>,
    pub requires_install_configuration: bool,
    pub install_schema: Option<Value>,
    pub management_capabilities: Vec<String>,
    pub max_quantity: u32,
    pub available: bool,
    pub unavailable_reason: Option<String>,
    #[serde(skip)]
    pub fulfiller: String,
    #[serde(skip)]
    pub machine: Option<MachineSize>,
    #[serde(skip)]
    pub machine_by: Option<MachineSizeBy>,
    #[serde(skip)]
    pub fields: Vec<FieldSpec>,
    #[serde(skip)]
    pub install_fields: Vec<FieldSpec>,
}

/// Whether the fulfiller named by a product can deliver it on this deployment.
pub enum Availability {
    Available,
    Unavailable(String),
}

impl Product {
    /// The size of the machine an order with `configuration` gets, if the product sets one.
    pub fn machine_size(&self, configuration: &Map<String, Value>) -> Option<MachineSize> {
        match &self.machine_by {
            Some(by) => configuration
                .get(&by.field)
                .and_then(Value::as_str)
                .and_then(|value| by.sizes.get(value))
                .copied()
                .or(self.machine),
            None => self.machine,
        }
    }

    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    fn enum_values(&self, name: &str) -> Vec<String> {
        self.field(name)
            .map(|f| f.values.clone())
            .unwrap_or_default()
    }

    /// A configuration that this product accepts as it is, for examples in documents: every
    /// required field, and integer fields with a lower bound at that bound (the cheapest valid
    /// choice, such as the shortest lease); everything else is left to its default.
    pub fn example_configuration(&self) -> Map<String, Value> {
        self.fields
            .iter()
            .filter_map(|f| {
                let value = match (f.required, f.field_type) {
                    (_, FieldType::Integer) if f.minimum.is_some() => json!(f.minimum),
                    (false, _) => return None,
                    (true, _) if f.default.is_some() => f.default.clone()?,
                    (true, FieldType::Integer) => json!(1),
                    (true, FieldType::Boolean) => json!(false),
                    (true, FieldType::Enum) => json!(f.values.first()?),
                    (true, FieldType::String) => match f.format {
                        Some(StringFormat::Hostname) => json!("agent-1"),
                        // No example key can stand for the buyer's own.
                        Some(StringFormat::SshPublicKey) => return None,
                        None => json!("example"),
                    },
                };
                Some((f.name.clone(), value))
            })
            .collect()
    }

    pub fn requirements(&self) -> Value {
        let (required, optional): (Vec<_>, Vec<_>) = self.fields.iter().partition(|f| f.required);
        json!({
            "product_id": self.id,
            "kind": self.kind,
            "required_fields": required.iter().map(|f| &f.name).collect::<Vec<_>>(),
            "optional_fields": optional.iter().map(|f| &f.name).collect::<Vec<_>>(),
            "supported_images": self.enum_values("image"),
            "supported_regions": self.enum_values("region"),
            "config_schema": self.config_schema,
            "requires_install_configuration": self.requires_install_configuration,
            "install_schema": self.install_schema,
            "available": self.available,
            "unavailable_reason": self.unavailable_reason,
        })
    }
}

/// The live catalog: products in the operator's order plus a version that changes whenever a
/// price or a field changes, so a quote records which catalog priced it.
#[derive(Debug, Clone)]
pub struct Catalog {
    products: Vec<Product>,
    version: String,
}

#[derive(Debug, thiserror::Error)]
#[error("catalog: {0}")]
pub struct CatalogError(pub String);

impl Catalog {
    /// Validates the operator's specification and builds the catalog.
    pub fn build(
        spec: CatalogSpec,
        availability: impl Fn(&ProductSpec) -> Availability,
    ) -> Result<Self, CatalogError> {
        let mut seen = HashSet::new();
        let mut fingerprint = String::new();
        let mut products = Vec::with_capacity(spec.products.len());
        for p in spec.products {
            validate_product(&p)?;
            if !seen.insert(p.id.clone()) {
                return Err(CatalogError(format!("product id '{}' appears twice", p.id)));
            }
            fingerprint.push_str(&format!(
                "{}|{}|{}|{}|{};",
                p.id,
                serde_json::to_string(&p.pricing).unwrap_or_default(),
                serde_json::to_string(&p.fields).unwrap_or_default(),
                serde_json::to_string(&p.install_fields).unwrap_or_default(),
                p.max_quantity
            ));
            let (available, unavailable_reason) = match availability(&p) {
                Availability::Available => (true, None),
                Availability::Unavailable(reason) => (false, Some(reason)),
            };
            let install_schema = p.requires_install_configuration.then(|| {
                json_schema(
                    &p.install_fields,
                    &format!("{} install configuration", p.name),
                )
            });
            products.push(Product {
                config_schema: json_schema(&p.fields, &format!("{} configuration", p.name)),
                install_schema,
                id: p.id,
                sku: p.sku,
                name: p.name,
                category: p.category,
                description: p.description,
                kind: p.kind,
                pricing: p.pricing,
                provisioning_estimate: p.provisioning_estimate,
                requires_install_configuration: p.requires_install_configuration,
                management_capabilities: p.management_capabilities,
                max_quantity: p.max_quantity,
                available,
                unavailable_reason,
                fulfiller: p.fulfiller,
                fields: p.fields,
                install_fields: p.install_fields,
                machine: p.machine,
                machine_by: p.machine_by,
            });
        }
        let version = crate::idempotency::sha256_hex(fingerprint.as_bytes())[..16].to_owned();
        Ok(Self { products, version })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    pub fn get(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }

    /// Products matching the query in catalog order. `q` matches id, sku, name and description
    /// case-insensitively; `category` must match exactly (case-insensitively).
    pub fn search<'a>(
        &'a self,
        q: Option<&str>,
        category: Option<&str>,
    ) -> impl Iterator<Item = &'a Product> + 'a {
        let q = q.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
        let category = category
            .map(|c| c.trim().to_lowercase())
            .filter(|c| !c.is_empty());
        self.products.iter().filter(move |p| {
            let category_ok = category
                .as_deref()
                .is_none_or(|c| p.category.to_lowercase() == c);
            let q_ok = q.as_deref().is_none_or(|q| {
                [&p.id, &p.sku, &p.name, &p.description]
                    .iter()
                    .any(|s| s.to_lowercase().contains(q))
            });
            category_ok && q_ok
        })
    }
}

fn validate_machine_sizes(p: &ProductSpec) -> Result<(), String> {
    let sizes = p
        .machine
        .iter()
        .chain(p.machine_by.iter().flat_map(|by| by.sizes.values()));
    for size in sizes {
        if size.vcpus == 0 || size.memory_mib < 64 || size.disk_gib == 0 || size.max_processes < 16
        {
            return Err(format!(
                "machine sizes need vcpus >= 1, memory_mib >= 64, disk_gib >= 1 and max_processes >= 16 (got {size:?})"
            ));
        }
    }
    if let Some(by) = &p.machine_by {
        let Some(field) = p.fields.iter().find(|f| f.name == by.field) else {
            return Err(format!("machine_by names the unknown field '{}'", by.field));
        };
        if let Some(missing) = field.values.iter().find(|v| !by.sizes.contains_key(*v)) {
            return Err(format!(
                "machine_by.sizes has no size for {}='{missing}'",
                by.field
            ));
        }
    }
    Ok(())
}

fn validate_product(p: &ProductSpec) -> Result<(), CatalogError> {
    let err = |msg: String| Err(CatalogError(format!("product '{}': {msg}", p.id)));
    if let Err(why) = validate_machine_sizes(p) {
        return err(why);
    }
    if p.id.is_empty()
        || p.id.len() > 64
        || !p
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return err("id must be 1-64 characters of a-z, 0-9 and '-'".into());
    }
    let pr = &p.pricing;
    let amounts_ok = [pr.base_minor, pr.unit_minor]
        .into_iter()
        .chain(pr.addons.iter().map(|a| a.unit_minor))
        .chain(
            pr.unit_minor_by
                .iter()
                .flat_map(|b| b.prices.values().copied()),
        )
        .all(|a| (0..=crate::money::MAX_AMOUNT_MINOR).contains(&a));
    if !amounts_ok {
        return err("prices must be between 0 and 100000000000 minor units".into());
    }
    if p.max_quantity == 0 || p.max_quantity > 1000 {
        return err("max_quantity must be between 1 and 1000".into());
    }
    for (fields, what) in [(&p.fields, "fields"), (&p.install_fields, "install_fields")] {
        let mut names = HashSet::new();
        for f in fields.iter() {
            if !names.insert(&f.name) {
                return err(format!("{what}: field '{}' appears twice", f.name));
            }
            if f.field_type == FieldType::Enum && f.values.is_empty() {
                return err(format!("field '{}' is an enum without values", f.name));
            }
            if let (Some(lo), Some(hi)) = (f.minimum, f.maximum) {
                if lo > hi {
                    return err(format!("field '{}' has minimum above maximum", f.name));
                }
            }
            if let Some(d) = &f.default {
                if check_value(f, d).is_err() {
                    return err(format!(
                        "field '{}' has a default that breaks its own rules",
                        f.name
                    ));
                }
            }
        }
    }
    let integer_field = |name: &str| {
        p.fields
            .iter()
            .any(|f| f.name == name && f.field_type == FieldType::Integer)
    };
    match (&pr.unit_field, pr.model) {
        (Some(u), _) if !integer_field(u) => {
            return err(format!("pricing.unit_field '{u}' is not an integer field"))
        }
        (None, m) if m != PricingModel::PerUse => {
            return err("pricing.unit_field is required unless the model is per_use".into())
        }
        _ => {}
    }
    for a in &pr.addons {
        if !p
            .fields
            .iter()
            .any(|f| f.name == a.field && f.field_type == FieldType::Boolean)
        {
            return err(format!("addon field '{}' is not a boolean field", a.field));
        }
    }
    if let Some(by) = &pr.unit_minor_by {
        let Some(f) = p
            .fields
            .iter()
            .find(|f| f.name == by.field && f.field_type == FieldType::Enum)
        else {
            return err(format!(
                "unit_minor_by field '{}' is not an enum field",
                by.field
            ));
        };
        if let Some(missing) = f.values.iter().find(|v| !by.prices.contains_key(*v)) {
            return err(format!("unit_minor_by has no price for '{missing}'"));
        }
    }
    Ok(())
}

/// Checks one present value against its field's rules. `Err(true)` means the type is wrong,
/// `Err(false)` that the value is of the right type but not allowed.
pub(crate) fn check_value(f: &FieldSpec, v: &Value) -> Result<(), bool> {
    match f.field_type {
        FieldType::Integer => {
            let n = v.as_i64().ok_or(true)?;
            let ok = f.minimum.is_none_or(|lo| n >= lo) && f.maximum.is_none_or(|hi| n <= hi);
            ok.then_some(()).ok_or(false)
        }
        FieldType::Boolean => v.as_bool().map(|_| ()).ok_or(true),
        FieldType::Enum => {
            let s = v.as_str().ok_or(true)?;
            f.values.iter().any(|x| x == s).then_some(()).ok_or(false)
        }
        FieldType::String => {
            let s = v.as_str().ok_or(true)?;
            let len_ok = f.max_length.is_none_or(|m| s.chars().count() <= m);
            let format_ok = match f.format {
                None => true,
                Some(StringFormat::Hostname) => is_hostname(s),
                Some(StringFormat::SshPublicKey) => is_ssh_public_key(s),
            };
            (len_ok && format_ok && !s.is_empty())
                .then_some(())
                .ok_or(false)
        }
    }
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_ssh_public_key(s: &str) -> bool {
    let mut parts = s.split_whitespace();
    let (Some(kind), Some(body)) = (parts.next(), parts.next()) else {
        return false;
    };
    let known = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
    ];
    s.len() <= 16 * 1024
        && known.contains(&kind)
        && body.len() >= 32
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

/// JSON Schema (draft 2020-12) of a set of configuration fields.
fn json_schema(fields: &[FieldSpec], title: &str) -> Value {
    let mut properties = Map::new();
    for f in fields {
        let mut s = Map::new();
        match f.field_type {
            FieldType::Integer => {
                s.insert("type".into(), json!("integer"));
                if let Some(lo) = f.minimum {
                    s.insert("minimum".into(), json!(lo));
                }
                if let Some(hi) = f.maximum {
                    s.insert("maximum".into(), json!(hi));
                }
            }
            FieldType::Boolean => {
                s.insert("type".into(), json!("boolean"));
            }
            FieldType::Enum => {
                s.insert("type".into(), json!("string"));
                s.insert("enum".into(), json!(f.values));
            }
            FieldType::String => {
                s.insert("type".into(), json!("string"));
                s.insert("minLength".into(), json!(1));
                if let Some(m) = f.max_length {
                    s.insert("maxLength".into(), json!(m));
                }
                match f.format {
                    Some(StringFormat::Hostname) => {
                        s.insert("format".into(), json!("hostname"));
                    }
                    Some(StringFormat::SshPublicKey) => {
                        s.insert("pattern".into(), json!("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\\.com) [A-Za-z0-9+/=]{32,}( .*)?$"));
                    }
                    None => {}
                }
            }
        }
        if !f.description.is_empty() {
            s.insert("description".into(), json!(f.description));
        }
        if let Some(d) = &f.default {
            s.insert("default".into(), d.clone());
        }
        properties.insert(f.name.clone(), Value::Object(s));
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name.as_str())
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": properties,
        "required": required,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_come_from_history_once_there_is_enough_of_it() {
        let fallback = Some(ProvisioningEstimate {
            min_seconds: 60,
            max_seconds: 600,
        });
        assert_eq!(
            ProvisioningEstimate::from_history(vec![5, 7], fallback),
            fallback
        );
        let e = ProvisioningEstimate::from_history((1..=100).rev().collect(), fallback).unwrap();
        assert_eq!((e.min_seconds, e.max_seconds), (10, 90));
        let fast = ProvisioningEstimate::from_history(vec![0, 0, 0], fallback).unwrap();
        assert_eq!((fast.min_seconds, fast.max_seconds), (1, 1));
    }

    #[test]
    fn machine_sizes_follow_the_instance_type_and_are_checked() {
        let builtin = || -> CatalogSpec { toml::from_str(DEFAULT_CATALOG_TOML).unwrap() };
        let catalog = Catalog::build(builtin(), |_| Availability::Available).unwrap();
        let vps = catalog.get("vps").unwrap();
        let of = |t: &str| {
            let mut config = Map::new();
            config.insert("type".into(), Value::String(t.into()));
            vps.machine_size(&config).unwrap().vcpus
        };
        assert_eq!((of("small"), of("medium"), of("large")), (1, 2, 4));
        let bare = catalog.get("bare-linux-machine").unwrap();
        assert_eq!(bare.machine_size(&Map::new()).unwrap().memory_mib, 1024);

        let mut spec = builtin();
        let product = spec.products.iter_mut().find(|p| p.id == "vps").unwrap();
        product.machine_by.as_mut().unwrap().sizes.remove("large");
        let refused = Catalog::build(spec, |_| Availability::Available).unwrap_err();
        assert!(refused.0.contains("type='large'"), "{}", refused.0);
    }

    #[test]
    fn default_catalog_builds_with_every_seed_product() {
        let spec: CatalogSpec =
            toml::from_str(DEFAULT_CATALOG_TOML).expect("default catalog parses");
        let catalog =
            Catalog::build(spec, |_| Availability::Available).expect("default catalog is valid");
        for id in [
            "bare-linux-machine",
            "gpu-h100-machine",
            "vps-micro",
            "vps-small",
            "vps-gpu-standard",
            "vps",
            "web-search",
            "kubernetes-hosting-universal",
        ] {
            assert!(
                catalog.get(id).is_some(),
                "{id} missing from the default catalog"
            );
        }
        assert_eq!(catalog.search(Some("VPS"), Some("compute")).count(), 4);
    }

    #[test]
    fn a_catalog_that_includes_the_builtin_one_adds_to_it_and_replaces_by_id() {
        let builtin: CatalogSpec = toml::from_str(DEFAULT_CATALOG_TOML).unwrap();
        let ids = |spec: &CatalogSpec| {
            spec.products
                .iter()
                .map(|p| p.id.clone())
                .collect::<Vec<_>>()
        };
        let builtin_ids = ids(&builtin);
        let web_search = builtin
            .products
            .iter()
            .find(|p| p.id == "web-search")
            .unwrap();
        let mut cheaper = web_search.clone();
        cheaper.name = "Cheaper search".into();
        let mut extra = web_search.clone();
        extra.id = "my-search".into();
        let own = |include_builtin| CatalogSpec {
            include_builtin,
            products: vec![extra.clone(), cheaper.clone()],
        };

        let merged = own(true).over(builtin.clone());
        let mut expected = builtin_ids.clone();
        expected.push("my-search".into());
        assert_eq!(
            ids(&merged),
            expected,
            "built-in order kept, own products after"
        );
        assert_eq!(
            merged
                .products
                .iter()
                .find(|p| p.id == "web-search")
                .unwrap()
                .name,
            "Cheaper search"
        );
        Catalog::build(merged, |_| Availability::Available).expect("the merged catalog is valid");

        let alone = own(false).over(builtin);
        assert_eq!(ids(&alone), ["my-search", "web-search"]);
    }

    #[test]
    fn example_configurations_use_only_the_products_own_fields_and_are_accepted() {
        let spec: CatalogSpec = toml::from_str(DEFAULT_CATALOG_TOML).unwrap();
        let catalog = Catalog::build(spec, |_| Availability::Available).unwrap();
        for product in catalog.products() {
            let example = product.example_configuration();
            for name in example.keys() {
                assert!(
                    product.field(name).is_some(),
                    "{}: {name} is not its field",
                    product.id
                );
            }
            let normalized = crate::pricing::normalize(&product.fields, &example, "configuration")
                .unwrap_or_else(|e| panic!("{}: {e:?}", product.id));
            assert!(
                normalized.warnings.is_empty(),
                "{}: the example needs no normalization: {:?}",
                product.id,
                normalized.warnings
            );
        }
        let machine = catalog
            .get("bare-linux-machine")
            .unwrap()
            .example_configuration();
        assert_eq!(
            Value::Object(machine),
            json!({"duration_minutes": 15}),
            "the shortest lease"
        );
    }
}
