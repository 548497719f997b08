//! JSON kept as its text.
//!
//! An order's result (search results, a machine's details) is produced once, stored, and from
//! then on only shown: no rule of the storefront reads inside it. Holding it as a parsed
//! [`serde_json::Value`] made every read of an order build a tree of maps and strings and then
//! write it out again, escaping each string — about a quarter of the CPU of a page of orders.
//! [`RawJson`] holds the compact text instead: reading it checks that it is JSON without
//! building anything, and writing it copies it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// A JSON value held as its compact text, written out as it is.
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The compact text of `value`.
    pub fn from_value(value: &Value) -> Self {
        Self(serde_json::value::to_raw_value(value).expect("a JSON value always serializes"))
    }

    /// Text read back from storage; an error when it is not one JSON value.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

/// Equal when the texts are: the storefront writes each result once, as the compact
/// serialization of its value, so equal values give equal texts.
impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Read through a [`Value`], so it works from any deserializer (an idempotency record read back
/// as a `Value`, say), not only from JSON text; the text is compact again afterwards.
impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| Self::from_value(&value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn written_out_as_the_same_text_a_value_would_give() {
        let value =
            json!({"results": [{"title": "a \"quoted\" word", "rank": 1}], "z": 0.5, "a": null});
        let raw = RawJson::from_value(&value);
        assert_eq!(raw.as_str(), serde_json::to_string(&value).unwrap());
        // Inside another value, as an order view carries it.
        let outer = json!({"result": value});
        let wrapped = serde_json::to_string(&json!({"result": raw.clone()})).unwrap();
        assert_eq!(wrapped, serde_json::to_string(&outer).unwrap());
        assert_eq!(serde_json::to_value(&raw).unwrap(), value);
        assert_eq!(serde_json::from_str::<Value>(raw.as_str()).unwrap(), value);
    }

    #[test]
    fn read_back_from_text_or_from_a_value() {
        let text = r#"{"b":[1,2,{"c":"d"}],"a":true}"#;
        let raw = RawJson::from_text(text.to_owned()).unwrap();
        assert_eq!(raw.as_str(), text);
        let from_text: RawJson = serde_json::from_str(text).unwrap();
        assert_eq!(from_text, raw);
        let parsed: Value = serde_json::from_str(text).unwrap();
        let from_value: RawJson = serde_json::from_value(parsed).unwrap();
        assert_eq!(from_value, raw);
    }

    #[test]
    fn text_that_is_not_one_json_value_is_refused() {
        for bad in ["", "{", "[1,", "1 2", "nul"] {
            assert!(RawJson::from_text(bad.to_owned()).is_err(), "{bad:?}");
        }
    }
}
