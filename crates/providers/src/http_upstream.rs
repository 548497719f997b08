//! An instant product fulfilled by an operator's JSON API: a request template filled from the
//! normalized configuration, and a response mapping from JSON pointers. Timeouts, transport
//! errors, non-2xx answers and unreadable bodies all become a `FulfillmentError` (the order is
//! then failed and refunded).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use storefront_app::ports::{Fulfiller, FulfillmentError};
use storefront_domain::catalog::Product;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum UpstreamMethod {
    #[default]
    Get,
    Post,
}

fn default_timeout_ms() -> u64 {
    5_000
}

/// One `[[upstreams]]` entry of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The name products use as their `fulfiller`.
    pub name: String,
    #[serde(default)]
    pub method: UpstreamMethod,
    /// Base URL of the endpoint.
    pub url: String,
    /// Query parameters; values may contain `{field}` placeholders.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// JSON body for POST; a string that is exactly `{field}` becomes the field's JSON value,
    /// other strings have their placeholders filled in.
    #[serde(default)]
    pub json_body: Option<Value>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// JSON pointer to the array of results in the answer (empty: the answer itself).
    #[serde(default)]
    pub results_pointer: String,
    /// Output field → JSON pointer inside each result. Empty: results are passed through.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Configuration field that caps how many results are returned.
    #[serde(default)]
    pub limit_field: Option<String>,
}

pub struct HttpUpstream {
    config: UpstreamConfig,
    client: reqwest::Client,
}

impl HttpUpstream {
    pub fn new(config: UpstreamConfig) -> Result<Self, String> {
        reqwest::Url::parse(&config.url)
            .map_err(|e| format!("upstream '{}': invalid url: {e}", config.name))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| format!("upstream '{}': {e}", config.name))?;
        Ok(Self { config, client })
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Replaces `{field}` placeholders with configuration values.
fn fill(template: &str, configuration: &Map<String, Value>) -> String {
    let mut out = template.to_owned();
    for (k, v) in configuration {
        out = out.replace(&format!("{{{k}}}"), &as_text(v));
    }
    out
}

fn fill_json(template: &Value, configuration: &Map<String, Value>) -> Value {
    match template {
        Value::String(s) => {
            let whole = s.strip_prefix('{').and_then(|r| r.strip_suffix('}'));
            match whole.and_then(|name| configuration.get(name)) {
                Some(v) => v.clone(),
                None => Value::String(fill(s, configuration)),
            }
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| fill_json(i, configuration)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_json(v, configuration)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[async_trait]
impl Fulfiller for HttpUpstream {
    async fn fulfill(
        &self,
        _product: &Product,
        configuration: &Map<String, Value>,
        _quantity: i64,
    ) -> Result<Value, FulfillmentError> {
        let c = &self.config;
        let fail = |message: &str, detail: String| FulfillmentError {
            message: message.to_owned(),
            detail,
        };
        let mut url = reqwest::Url::parse(&c.url)
            .map_err(|e| fail("The upstream is misconfigured.", e.to_string()))?;
        if !c.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &c.query {
                pairs.append_pair(k, &fill(v, configuration));
            }
        }
        let request = match c.method {
            UpstreamMethod::Get => self.client.get(url),
            UpstreamMethod::Post => {
                let body = c
                    .json_body
                    .as_ref()
                    .map(|b| fill_json(b, configuration))
                    .unwrap_or(Value::Object(configuration.clone()));
                self.client.post(url).json(&body)
            }
        };
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                fail(
                    "The upstream did not answer in time.",
                    format!("upstream '{}': {e}", c.name),
                )
            } else {
                fail(
                    "The upstream could not be reached.",
                    format!("upstream '{}': {e}", c.name),
                )
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(
                &format!("The upstream answered with HTTP {}.", status.as_u16()),
                format!("upstream '{}' status {status}", c.name),
            ));
        }
        let body: Value = response.json().await.map_err(|e| {
            fail(
                "The upstream's answer could not be read.",
                format!("upstream '{}': {e}", c.name),
            )
        })?;
        let results = body
            .pointer(&c.results_pointer)
            .and_then(Value::as_array)
            .ok_or_else(|| {
                fail(
                    "The upstream's answer had no results list.",
                    format!("upstream '{}': no array at '{}'", c.name, c.results_pointer),
                )
            })?;
        let limit = c
            .limit_field
            .as_ref()
            .and_then(|f| configuration.get(f))
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |l| l as usize);
        let mapped: Vec<Value> = results
            .iter()
            .take(limit)
            .map(|item| {
                if c.fields.is_empty() {
                    return item.clone();
                }
                Value::Object(
                    c.fields
                        .iter()
                        .map(|(out, pointer)| {
                            (
                                out.clone(),
                                item.pointer(pointer).cloned().unwrap_or(Value::Null),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        let mut result = Map::new();
        if let Some(q) = configuration.get("query") {
            result.insert("query".into(), q.clone());
        }
        result.insert("source".into(), Value::String(c.name.clone()));
        result.insert("results".into(), Value::Array(mapped));
        Ok(Value::Object(result))
    }
}
