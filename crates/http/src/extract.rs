//! Extractors that validate at the edge and fail with the contract's errors: JSON bodies
//! (content type, size, syntax, unknown fields, types — each naming the field), query strings,
//! and the caller's principal.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use storefront_app::{App, Principal};
use storefront_domain::idempotency::IdempotencyKey;
use storefront_domain::{DomainError, ErrorCode};

/// A JSON object body deserialized into `T` (duplicate members and non-objects refused).
pub struct ApiJson<T> {
    pub body: T,
}

fn payload_too_large() -> DomainError {
    DomainError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "The request body is larger than {} KiB.",
            crate::MAX_BODY_BYTES / 1024
        ),
        "Send a smaller body.",
    )
}

/// Reads the body as JSON; an empty body counts as `{}` when `empty_ok`.
async fn read_json<S: Send + Sync>(
    req: Request,
    state: &S,
    empty_ok: bool,
) -> Result<Value, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(payload_too_large())
        } else {
            ApiError(DomainError::new(
                ErrorCode::MalformedJson,
                "The request body could not be read.",
                "Send the body again.",
            ))
        }
    })?;
    if bytes.is_empty() && empty_ok {
        return Ok(Value::Object(Default::default()));
    }
    let is_json = content_type.as_deref().is_some_and(|ct| {
        ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
    });
    if !is_json {
        return Err(ApiError(DomainError::validation(
            "Content-Type",
            "The request body must be JSON.",
            "Send the header 'Content-Type: application/json'.",
        )));
    }
    parse_json_without_duplicates(&bytes).map_err(ApiError)
}

/// Parses JSON text, refusing a member name that appears twice in one object: serde_json keeps
/// the last silently, so `{"region": "a", "region": "b"}` would buy something other than what a
/// reader of the request sees.
pub fn parse_json_without_duplicates(bytes: &[u8]) -> Result<Value, DomainError> {
    let malformed = |e: &serde_json::Error| {
        DomainError::new(
            ErrorCode::MalformedJson,
            format!("The body is not valid JSON: {e}."),
            "Fix the JSON syntax (quotes, commas, braces) and send it again.",
        )
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, UniqueKeys>(&mut deserializer) {
        Ok(UniqueKeys(value)) => value,
        Err(e) => {
            let message = e.inner().to_string();
            let Some(key) = message
                .strip_prefix(DUPLICATE_PREFIX)
                .and_then(|rest| rest.split('`').next())
            else {
                return Err(malformed(e.inner()));
            };
            let parent = e.path().to_string();
            let param = if parent == "." || parent.is_empty() {
                key.to_owned()
            } else {
                format!("{parent}.{key}")
            };
            return Err(DomainError::validation(
                param.clone(),
                format!("'{param}' appears more than once in the body."),
                format!("Send '{key}' once, with the value you mean."),
            ));
        }
    };
    deserializer.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

const DUPLICATE_PREFIX: &str = "duplicate member `";

/// A JSON value whose objects have unique member names (see [`parse_json_without_duplicates`]).
struct UniqueKeys(Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "{DUPLICATE_PREFIX}{key}`"
                )));
            }
            let UniqueKeys(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

pub use storefront_domain::input::from_value;

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let raw = read_json(req, state, false).await?;
        if !raw.is_object() {
            return Err(ApiError(DomainError::validation(
                "body",
                "The body must be a JSON object.",
                "Send a JSON object: {...}.",
            )));
        }
        Ok(Self {
            body: from_value(&raw)?,
        })
    }
}

/// Like [`ApiJson`], for actions whose body is optional (an empty body is `{}`).
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let raw = read_json(req, state, true).await?;
        Ok(Self(from_value(&raw)?))
    }
}

/// Path parameters, like axum's `Path`, but a segment that cannot be read (not UTF-8, say) is
/// answered in the error envelope like every other bad input.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError(DomainError::validation(
                "path",
                format!(
                    "The request path cannot be read: {}.",
                    rejection.body_text()
                ),
                "Send ids as they were returned (percent-encoded UTF-8).",
            ))),
        }
    }
}

/// Query parameters deserialized into `T` with the same field-naming errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Every value stays a string here; the typed parse (and its error naming the parameter)
        // happens in `from_value`. Later duplicates win.
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .map_err(|_| {
                ApiError(DomainError::validation(
                    "query",
                    "The query string could not be decoded.",
                    "Percent-encode the query parameters.",
                ))
            })?;
        let map: serde_json::Map<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        Ok(Self(from_value(&Value::Object(map))?))
    }
}

/// Parses an optional integer query parameter, naming it on failure.
pub fn int_param(name: &str, raw: Option<&str>) -> Result<Option<i64>, DomainError> {
    raw.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                DomainError::validation(
                    name,
                    format!("'{s}' is not an integer."),
                    format!("Send {name} as a whole number."),
                )
            })
        })
        .transpose()
}

/// The caller: an API key from `Authorization: Bearer`, or the public principal without one.
/// Other schemes (`Payment` credentials for MPP) are not keys and leave the caller public. A
/// suspended agent is refused (the kill switch); see [`CallerEvenIfSuspended`] for the routes it
/// may still use.
pub struct Caller(pub Principal);

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let principal = bearer_principal(parts, app).await?;
        app.ensure_not_suspended(&principal).await?;
        Ok(Self(principal))
    }
}

/// The caller of a route a suspended agent may still use: reading its own rules, so it can see
/// why it was stopped (docs/api.md, "Principals").
pub struct CallerEvenIfSuspended(pub Principal);

impl FromRequestParts<App> for CallerEvenIfSuspended {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        Ok(Self(bearer_principal(parts, app).await?))
    }
}

async fn bearer_principal(parts: &Parts, app: &App) -> Result<Principal, ApiError> {
    match bearer_token(&parts.headers)? {
        Some(secret) => Ok(app.authenticate(secret).await?),
        None => Ok(Principal::Public),
    }
}

/// The secret of `Authorization: Bearer <secret>`; `None` without the header or with another
/// scheme, `401` for a header that is not text.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError(DomainError::unauthorized()))?;
    let (scheme, secret) = value.split_once(' ').unwrap_or((value, ""));
    Ok(scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim()))
}

/// The key from `Idempotency-Key`, or from `request_id` in the body when the header is absent.
pub fn idempotency_key(
    headers: &HeaderMap,
    request_id: Option<String>,
) -> Result<Option<IdempotencyKey>, DomainError> {
    if headers.get_all("idempotency-key").iter().nth(1).is_some() {
        return Err(DomainError::validation(
            "Idempotency-Key",
            "The request has more than one Idempotency-Key header.",
            "Send exactly one Idempotency-Key header.",
        ));
    }
    match headers.get("idempotency-key") {
        // A header that is not even text is refused with the same message as a bad key.
        Some(v) => {
            IdempotencyKey::parse_param(v.to_str().unwrap_or_default(), "Idempotency-Key").map(Some)
        }
        None => request_id
            .map(|k| IdempotencyKey::parse_param(&k, "request_id"))
            .transpose(),
    }
}

/// The key a retry-safe action needs: the header (or `request_id`), required.
pub fn required_idempotency_key(
    headers: &HeaderMap,
    request_id: Option<String>,
) -> Result<IdempotencyKey, DomainError> {
    idempotency_key(headers, request_id)?.ok_or_else(|| {
        DomainError::validation(
            "Idempotency-Key",
            "This request needs an idempotency key.",
            "Send an 'Idempotency-Key' header (or request_id in the body) that is unique per purchase; reuse it only to retry the same request.",
        )
    })
}
