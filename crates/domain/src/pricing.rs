//! Configuration normalization and deterministic pricing.
//!
//! Normalization follows docs/api.md, "Normalization": a required field that is missing or of the
//! wrong type is an error; an optional value that is out of range or invalid is replaced by the
//! field's default ("defaulted down, not clamped up") and reported; unknown fields are dropped and
//! reported. An enum value outside its list is always an error that lists the allowed values.

use crate::catalog::{check_value, FieldSpec, FieldType, Product, StringFormat};
use crate::error::{DomainError, DomainResult};
use crate::money::MAX_AMOUNT_MINOR;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigurationWarning {
    pub field: String,
    /// `out_of_range`, `invalid_value`, `wrong_type` or `unknown_field`.
    pub code: String,
    pub message: String,
    pub requested: Value,
    pub applied: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineItem {
    pub description: String,
    pub quantity: i64,
    pub unit_minor: i64,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub configuration: Map<String, Value>,
    pub warnings: Vec<ConfigurationWarning>,
}

/// `billing_term_months` → `billingTermMonths`: the MCP store we follow spells fields in camelCase
/// (docs/api.md, "Normalization").
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Normalizes a configuration against a set of fields. `param_prefix` is where the fields live in
/// the request (`configuration`), so that errors name the full path.
pub fn normalize(
    fields: &[FieldSpec],
    raw: &Map<String, Value>,
    param_prefix: &str,
) -> DomainResult<Normalized> {
    let mut configuration = Map::new();
    let mut warnings = Vec::new();
    let mut consumed: Vec<&str> = Vec::new();

    for f in fields {
        let camel = camel_case(&f.name);
        let (key, value) = match (
            raw.get_key_value(f.name.as_str()),
            raw.get_key_value(camel.as_str()),
        ) {
            (Some((k, v)), _) | (None, Some((k, v))) => (Some(k.as_str()), Some(v)),
            (None, None) => (None, None),
        };
        if let Some(k) = key {
            consumed.push(k);
        }
        let param = format!("{param_prefix}.{}", f.name);
        let value = value.filter(|v| !v.is_null());
        let Some(value) = value else {
            if f.required {
                return Err(DomainError::validation(
                    param,
                    format!("'{}' is required.", f.name),
                    format!("Add '{}' to the configuration: {}", f.name, describe(f)),
                ));
            }
            if let Some(d) = &f.default {
                configuration.insert(f.name.clone(), d.clone());
            }
            continue;
        };
        match check_value(f, value) {
            Ok(()) => {
                configuration.insert(f.name.clone(), value.clone());
            }
            Err(_) if f.field_type == FieldType::Enum && value.is_string() => {
                return Err(DomainError::validation(
                    param,
                    format!(
                        "'{}' is not a supported {}.",
                        value.as_str().unwrap_or_default(),
                        f.name
                    ),
                    format!("Use one of: {}.", f.values.join(", ")),
                ));
            }
            // A key the buyer sent is plainly meant to be theirs: dropping it with a warning
            // would deliver a machine their key cannot reach.
            Err(_) if f.format == Some(StringFormat::SshPublicKey) => {
                return Err(DomainError::validation(
                    param,
                    format!("'{}' is not an OpenSSH public key.", f.name),
                    format!(
                        "Send '{}' as the one line of a .pub file ('ssh-ed25519 AAAA... comment'), or leave it out to get a generated key.",
                        f.name
                    ),
                ));
            }
            Err(wrong_type) if f.required => {
                let what = if wrong_type {
                    "has the wrong type"
                } else {
                    "is not allowed"
                };
                return Err(DomainError::validation(
                    param,
                    format!("'{}' {what}.", f.name),
                    format!("Send '{}' as {}", f.name, describe(f)),
                ));
            }
            Err(wrong_type) => {
                let code = if wrong_type {
                    "wrong_type"
                } else if f.field_type == FieldType::Integer {
                    "out_of_range"
                } else {
                    "invalid_value"
                };
                let applied = f.default.clone().unwrap_or(Value::Null);
                let message = match &f.default {
                    Some(d) => format!(
                        "'{}' {} ({}); the default {d} was applied instead.",
                        f.name,
                        if wrong_type {
                            "has the wrong type"
                        } else {
                            "is out of range or invalid"
                        },
                        describe(f)
                    ),
                    None => format!("'{}' is invalid ({}) and was dropped.", f.name, describe(f)),
                };
                if let Some(d) = &f.default {
                    configuration.insert(f.name.clone(), d.clone());
                }
                warnings.push(ConfigurationWarning {
                    field: f.name.clone(),
                    code: code.into(),
                    message,
                    requested: value.clone(),
                    applied,
                });
            }
        }
    }
    for (k, v) in raw {
        if !consumed.contains(&k.as_str()) {
            warnings.push(ConfigurationWarning {
                field: k.clone(),
                code: "unknown_field".into(),
                message: format!(
                    "'{k}' is not a configuration field of this product and was dropped."
                ),
                requested: v.clone(),
                applied: Value::Null,
            });
        }
    }
    Ok(Normalized {
        configuration,
        warnings,
    })
}

/// A human description of what a field accepts, for suggestions.
fn describe(f: &FieldSpec) -> String {
    match f.field_type {
        FieldType::Integer => match (f.minimum, f.maximum) {
            (Some(lo), Some(hi)) => format!("an integer from {lo} to {hi}"),
            (Some(lo), None) => format!("an integer of at least {lo}"),
            (None, Some(hi)) => format!("an integer of at most {hi}"),
            (None, None) => "an integer".into(),
        },
        FieldType::Boolean => "true or false".into(),
        FieldType::Enum => format!("one of: {}", f.values.join(", ")),
        FieldType::String => {
            let mut d = "a non-empty string".to_string();
            if let Some(m) = f.max_length {
                d.push_str(&format!(" of at most {m} characters"));
            }
            match f.format {
                Some(crate::catalog::StringFormat::Hostname) => d.push_str(", a valid host name"),
                Some(crate::catalog::StringFormat::SshPublicKey) => {
                    d.push_str(", one OpenSSH public key line")
                }
                None => {}
            }
            d
        }
    }
}

fn overflow() -> DomainError {
    DomainError::validation(
        "quantity",
        "The order total is too large.",
        "Order a smaller quantity or a shorter term.",
    )
}

/// A quantity the product can be ordered in: 1 to its `max_quantity`.
pub fn check_quantity(product: &Product, quantity: i64) -> DomainResult<()> {
    if quantity < 1 || quantity > i64::from(product.max_quantity) {
        return Err(DomainError::validation(
            "quantity",
            format!("quantity {quantity} is out of range for {}.", product.id),
            format!("Use a quantity from 1 to {}.", product.max_quantity),
        ));
    }
    Ok(())
}

/// Prices a normalized configuration. Deterministic: the same product and configuration always
/// give the same line items, and the total is their sum. A quantity or unit count below one is
/// refused here too, so no caller can price a negative charge.
pub fn price(
    product: &Product,
    quantity: i64,
    config: &Map<String, Value>,
) -> DomainResult<Vec<LineItem>> {
    check_quantity(product, quantity)?;
    let pricing = &product.pricing;
    let units = match &pricing.unit_field {
        Some(field) => config
            .get(field)
            .and_then(Value::as_i64)
            .filter(|units| *units >= 1)
            .ok_or_else(|| {
                DomainError::validation(
                    format!("configuration.{field}"),
                    format!(
                        "'{field}' must be a whole number of at least 1 to price this product."
                    ),
                    format!("Add '{field}' to the configuration."),
                )
            })?,
        None => 1,
    };
    let unit_minor = match &pricing.unit_minor_by {
        Some(by) => config
            .get(&by.field)
            .and_then(Value::as_str)
            .and_then(|v| by.prices.get(v))
            .copied()
            .unwrap_or(pricing.unit_minor),
        None => pricing.unit_minor,
    };
    let mut items = Vec::new();
    let mut push = |description: String, qty: i64, unit: i64| -> DomainResult<()> {
        let amount = qty
            .checked_mul(unit)
            .filter(|a| *a <= MAX_AMOUNT_MINOR)
            .ok_or_else(overflow)?;
        items.push(LineItem {
            description,
            quantity: qty,
            unit_minor: unit,
            amount_minor: amount,
        });
        Ok(())
    };
    if pricing.base_minor > 0 {
        push(
            format!("{} base fee", product.name),
            quantity,
            pricing.base_minor,
        )?;
    }
    let total_units = units.checked_mul(quantity).ok_or_else(overflow)?;
    let variant = pricing
        .unit_minor_by
        .as_ref()
        .and_then(|by| config.get(&by.field).and_then(Value::as_str))
        .map(|v| format!(" ({v})"))
        .unwrap_or_default();
    push(
        format!(
            "{}{variant}: {units} {}",
            product.name,
            pricing.model.unit_label(units)
        ),
        total_units,
        unit_minor,
    )?;
    for addon in &pricing.addons {
        if config.get(&addon.field).and_then(Value::as_bool) == Some(true) {
            push(
                format!(
                    "{}: {units} {}",
                    addon.description,
                    pricing.model.unit_label(units)
                ),
                total_units,
                addon.unit_minor,
            )?;
        }
    }
    Ok(items)
}

/// The sum of the line items, checked.
pub fn total(items: &[LineItem]) -> DomainResult<i64> {
    items
        .iter()
        .try_fold(0i64, |acc, i| acc.checked_add(i.amount_minor))
        .filter(|t| *t <= MAX_AMOUNT_MINOR)
        .ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Availability, Catalog, CatalogSpec, DEFAULT_CATALOG_TOML};
    use proptest::prelude::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        let spec: CatalogSpec = toml::from_str(DEFAULT_CATALOG_TOML).unwrap();
        Catalog::build(spec, |_| Availability::Available).unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_malformed_ssh_public_key_is_an_error_naming_the_field_not_a_warning() {
        let c = catalog();
        let p = c.get("bare-linux-machine").unwrap();
        for key in [json!("not a key"), json!("ssh-ed25519"), json!(42)] {
            let e = normalize(
                &p.fields,
                &obj(json!({"ssh_public_key": key})),
                "configuration",
            )
            .unwrap_err();
            assert_eq!(e.param.as_deref(), Some("configuration.ssh_public_key"));
        }
        let good =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me";
        let n = normalize(
            &p.fields,
            &obj(json!({"ssh_public_key": good})),
            "configuration",
        )
        .unwrap();
        assert_eq!(n.configuration["ssh_public_key"], json!(good));
        assert!(n.warnings.is_empty());
    }

    #[test]
    fn out_of_range_optional_is_defaulted_down_not_clamped() {
        let c = catalog();
        let p = c.get("bare-linux-machine").unwrap();
        let n = normalize(
            &p.fields,
            &obj(json!({"duration_minutes": 100000})),
            "configuration",
        )
        .unwrap();
        assert_eq!(n.configuration["duration_minutes"], json!(60));
        assert_eq!(n.warnings.len(), 1);
        assert_eq!(n.warnings[0].code, "out_of_range");
        assert_eq!(n.warnings[0].requested, json!(100000));
        assert_eq!(n.warnings[0].applied, json!(60));
    }

    #[test]
    fn required_missing_and_bad_enum_are_errors_naming_the_field() {
        let c = catalog();
        let p = c.get("vps-micro").unwrap();
        let e = normalize(
            &p.fields,
            &obj(json!({"region": "local", "image": "debian-12", "billing_term_months": 1})),
            "configuration",
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("configuration.hostname"));
        let e = normalize(&p.fields, &obj(json!({"hostname": "a", "region": "mars", "image": "debian-12", "billing_term_months": 1})), "configuration").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("configuration.region"));
        assert!(e.suggestion.contains("local"));
    }

    #[test]
    fn seed_001_camel_case_quote_prices_like_the_seed() {
        let c = catalog();
        let p = c.get("vps-micro").unwrap();
        let raw = obj(
            json!({"hostname": "deploy-node-01", "region": "local", "image": "debian-12", "billingTermMonths": 1, "backupsEnabled": true}),
        );
        let n = normalize(&p.fields, &raw, "configuration").unwrap();
        assert!(n.warnings.is_empty(), "{:?}", n.warnings);
        let items = price(p, 1, &n.configuration).unwrap();
        assert_eq!(
            total(&items).unwrap(),
            2400,
            "a month of the VPS with backups costs 2400 (the MCP store's price)"
        );
    }

    #[test]
    fn unknown_fields_are_dropped_with_a_warning() {
        let c = catalog();
        let p = c.get("web-search").unwrap();
        let n = normalize(
            &p.fields,
            &obj(json!({"query": "rust", "colour": "blue"})),
            "configuration",
        )
        .unwrap();
        assert!(!n.configuration.contains_key("colour"));
        assert_eq!(n.warnings[0].code, "unknown_field");
        assert_eq!(n.configuration["max_results"], json!(10));
    }

    proptest! {
        #[test]
        fn pricing_is_deterministic_and_total_is_the_sum(
            minutes in -1000i64..1000,
            months in 1i64..=12,
            backups: bool,
            hours in 1i64..=720,
            kind in prop::sample::select(vec!["small", "medium", "large"]),
        ) {
            let c = catalog();
            let cases = [
                ("bare-linux-machine", json!({"duration_minutes": minutes})),
                ("vps-small", json!({"hostname": "h", "region": "local", "image": "debian-12", "billing_term_months": months, "backups_enabled": backups})),
                ("vps", json!({"region": "local", "type": kind, "duration_hours": hours})),
            ];
            for (id, raw) in cases {
                let p = c.get(id).unwrap();
                let n1 = normalize(&p.fields, &obj(raw.clone()), "configuration").unwrap();
                let n2 = normalize(&p.fields, &obj(raw), "configuration").unwrap();
                prop_assert_eq!(&n1, &n2);
                let a = price(p, 1, &n1.configuration).unwrap();
                let b = price(p, 1, &n2.configuration).unwrap();
                prop_assert_eq!(&a, &b);
                let sum: i64 = a.iter().map(|i| i.amount_minor).sum();
                prop_assert_eq!(total(&a).unwrap(), sum);
                prop_assert!(a.iter().all(|i| i.amount_minor == i.quantity * i.unit_minor));
            }
        }
    }
}
