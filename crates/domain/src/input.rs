//! Input as the doors receive it (a REST body or query, an MCP tool's arguments), turned into
//! typed requests with errors that name the offending field by its JSON path.

use crate::DomainError;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Deserializes a JSON value into `T`, turning serde's complaint into a validation error whose
/// `param` is the JSON path of the offending field.
pub fn from_value<T: DeserializeOwned>(raw: &Value) -> Result<T, DomainError> {
    serde_path_to_error::deserialize::<_, T>(raw).map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." || path == "?" {
            path.clear();
        }
        let inner = e.inner().to_string();
        let (param, message, suggestion) = if let Some(rest) = inner.strip_prefix("unknown field `")
        {
            let field = rest.split('`').next().unwrap_or_default();
            let param = if path.is_empty() || path.ends_with(field) {
                if path.is_empty() {
                    field.to_owned()
                } else {
                    path.clone()
                }
            } else {
                format!("{path}.{field}")
            };
            let expected = rest
                .split_once("expected ")
                .map(|(_, e)| e.to_owned())
                .unwrap_or_default();
            (
                param,
                format!("Unknown field '{field}'."),
                format!("Remove '{field}'; the accepted fields are {expected}."),
            )
        } else if let Some(rest) = inner.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default();
            let param = if path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
            (
                param,
                format!("'{field}' is required."),
                format!("Add '{field}'."),
            )
        } else {
            let param = if path.is_empty() {
                "body".to_owned()
            } else {
                path.clone()
            };
            (
                param.clone(),
                format!("'{param}' is invalid: {inner}."),
                "Check the field's type in the published schema.".to_owned(),
            )
        };
        DomainError::validation(param, message, suggestion)
    })
}
