//! Idempotency keys (docs/api.md, "Idempotency"; IETF draft-ietf-httpapi-idempotency-key-header,
//! Stripe): a key is scoped to a principal and a route, and remembers a fingerprint of the request
//! it first came with.

use serde_json::Value;
use sha2::{Digest, Sha256};

pub const MAX_KEY_LEN: usize = 255;

/// A validated key: 1–255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Option<Self> {
        (!raw.is_empty()
            && raw.len() <= MAX_KEY_LEN
            && raw.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .then(|| Self(raw.to_owned()))
    }

    /// The key sent as `param`, or an error naming that field.
    pub fn parse_param(raw: &str, param: &str) -> Result<Self, crate::DomainError> {
        Self::parse(raw).ok_or_else(|| {
            crate::DomainError::validation(
                param,
                format!("The idempotency key must be 1-{MAX_KEY_LEN} printable ASCII characters."),
                "Use a UUID or another unique string per purchase.",
            )
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Canonical JSON (object keys sorted at every level, no insignificant whitespace), so that two
/// bodies that differ only in key order or spacing have the same fingerprint.
pub fn canonical_json(value: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// The fingerprint of a request body.
pub fn fingerprint(body: &Value) -> String {
    sha256_hex(canonical_json(body).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fingerprint_ignores_key_order_but_not_values() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b = json!({"a": {"x": "s", "y": [1, 2]}, "b": 1});
        let c = json!({"a": {"x": "s", "y": [2, 1]}, "b": 1});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn keys_are_bounded_printable_ascii() {
        assert!(IdempotencyKey::parse("order-1").is_some());
        assert!(IdempotencyKey::parse("").is_none());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_none());
        assert!(IdempotencyKey::parse("tab\there").is_none());
    }
}
