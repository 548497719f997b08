//! A stand-in for the part of Stripe's API the storefront calls, speaking Stripe's documented
//! wire format: form-encoded requests with bracketed keys, HTTP Basic (or Bearer) secret-key
//! auth, `Idempotency-Key` replays (`Idempotent-Replayed: true`), JSON objects and
//! `{"error": {...}}` bodies, and webhook events signed with `Stripe-Signature`
//! (`t=<unix>,v1=<hex HMAC-SHA256 of "t.payload">`).
//!
//! Endpoints: `POST/GET /v1/payment_intents`, `POST /v1/checkout/sessions`,
//! `GET /v1/checkout/sessions/{id}`, `POST /v1/checkout/sessions/{id}/expire`, `POST /v1/refunds`,
//! `GET /v1/refunds`, and the hosted page `GET/POST /pay/{id}` where a "customer" pays.
//!
//! Shared payment tokens decide the outcome of a PaymentIntent:
//! `spt_decline…` → `402 card_error/card_declined`; `spt_requires_payment_method…` → a
//! PaymentIntent left in `requires_payment_method`; `spt_requires_action…` → `requires_action`;
//! any other `spt_…` → `succeeded`, once (a token is single-use); anything else → `400
//! resource_missing`.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// How the stand-in is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The secret key callers must present (`sk_test_…`).
    pub secret_key: String,
    /// The webhook signing secret (`whsec_…`).
    pub webhook_secret: String,
    /// Where events are delivered; `None` keeps them for [`Standin::events`] only.
    pub webhook_url: Option<String>,
}

/// A running stand-in.
#[derive(Clone)]
pub struct Standin {
    pub base_url: String,
    state: Arc<Shared>,
}

struct Shared {
    config: Config,
    webhook_url: Mutex<Option<String>>,
    base_url: String,
    data: Mutex<Data>,
    http: reqwest::Client,
}

/// A request's parameters, and the status and body it was answered with.
type Recorded = (Vec<(String, String)>, u16, Value);

#[derive(Default)]
struct Data {
    payment_intents: Vec<Value>,
    sessions: BTreeMap<String, Value>,
    refunds: Vec<Value>,
    used_tokens: HashSet<String>,
    /// (route, key) → the first request with that key and its answer.
    idempotency: HashMap<(String, String), Recorded>,
    /// Every event created, in order, with its JSON payload.
    events: Vec<(String, String)>,
}

impl Standin {
    /// Starts the stand-in on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr, config: Config) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Shared {
            webhook_url: Mutex::new(config.webhook_url.clone()),
            config,
            base_url: base_url.clone(),
            data: Mutex::new(Data::default()),
            http: reqwest::Client::new(),
        });
        let app = Router::new()
            .route(
                "/v1/payment_intents",
                post(create_payment_intent).get(list_payment_intents),
            )
            .route("/v1/checkout/sessions", post(create_session))
            .route("/v1/checkout/sessions/{id}", get(get_session))
            .route("/v1/checkout/sessions/{id}/expire", post(expire_session))
            .route("/v1/refunds", post(create_refund).get(list_refunds))
            .route("/pay/{id}", get(payment_page).post(pay))
            .with_state(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "stripe stand-in stopped");
            }
        });
        Ok(Self { base_url, state })
    }

    /// Where events are delivered from now on.
    pub fn set_webhook_url(&self, url: &str) {
        *self
            .state
            .webhook_url
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(url.to_owned());
    }

    /// The PaymentIntents created so far.
    pub fn payment_intents(&self) -> Vec<Value> {
        self.state.data().payment_intents.clone()
    }

    /// The refunds created so far.
    pub fn refunds(&self) -> Vec<Value> {
        self.state.data().refunds.clone()
    }

    /// A checkout session by id.
    pub fn session(&self, id: &str) -> Option<Value> {
        self.state.data().sessions.get(id).cloned()
    }

    /// Every event created so far: `(event id, JSON payload)`.
    pub fn events(&self) -> Vec<(String, String)> {
        self.state.data().events.clone()
    }

    /// The customer pays the session on its hosted page; `checkout.session.completed` is
    /// delivered. Returns the webhook endpoint's HTTP status (`None` without a webhook URL).
    pub async fn pay(&self, session_id: &str) -> Result<Option<u16>, String> {
        let event = self.state.complete_session(session_id)?;
        Ok(self.state.deliver(&event).await)
    }

    /// Delivers an already created event again (Stripe retries and duplicates deliveries).
    pub async fn redeliver(&self, event_id: &str) -> Option<u16> {
        let payload = self
            .state
            .data()
            .events
            .iter()
            .find(|(id, _)| id == event_id)
            .map(|(_, p)| p.clone())?;
        self.state.deliver(&payload).await
    }

    /// The `Stripe-Signature` header value Stripe would send for `payload` at `timestamp`.
    pub fn signature_header(&self, payload: &str, timestamp: i64) -> String {
        sign(&self.state.config.webhook_secret, payload, timestamp)
    }
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<payload>")>`, as Stripe signs.
pub fn sign(secret: &str, payload: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

impl Shared {
    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_event(&self, data: &mut Data, kind: &str, object: Value) -> String {
        let id = new_id("evt");
        let payload = json!({
            "id": id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": chrono::Utc::now().timestamp(),
            "livemode": false,
            "type": kind,
            "data": {"object": object},
        })
        .to_string();
        data.events.push((id, payload.clone()));
        payload
    }

    fn complete_session(&self, session_id: &str) -> Result<String, String> {
        let mut data = self.data();
        let mut session = data
            .sessions
            .get(session_id)
            .cloned()
            .ok_or_else(|| format!("no checkout session {session_id}"))?;
        if session["status"] != "open" {
            return Err(format!(
                "checkout session {session_id} is {}",
                session["status"]
            ));
        }
        let intent = json!({
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": session["amount_total"],
            "currency": session["currency"],
            "status": "succeeded",
            "metadata": session["metadata"],
            "latest_charge": new_id("ch"),
        });
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["payment_intent"] = intent["id"].clone();
        data.payment_intents.push(intent);
        data.sessions.insert(session_id.to_owned(), session.clone());
        Ok(self.new_event(&mut data, "checkout.session.completed", session))
    }

    async fn deliver(&self, payload: &str) -> Option<u16> {
        let url = self
            .webhook_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let header = sign(
            &self.config.webhook_secret,
            payload,
            chrono::Utc::now().timestamp(),
        );
        match self
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Stripe-Signature", header)
            .body(payload.to_owned())
            .send()
            .await
        {
            Ok(r) => Some(r.status().as_u16()),
            Err(e) => {
                tracing::warn!(error = %e, "webhook delivery failed");
                Some(0)
            }
        }
    }
}

fn new_id(prefix: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "{prefix}_test_{}",
        Alphanumeric.sample_string(&mut rand::rng(), 24)
    )
}

fn stripe_error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> (u16, Value) {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    (status.as_u16(), json!({ "error": error }))
}

fn authorized(state: &Shared, headers: &HeaderMap) -> bool {
    use base64::Engine;
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return token == state.config.secret_key;
    }
    value
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|pair| pair.split(':').next() == Some(state.config.secret_key.as_str()))
}

/// Authentication and idempotency around one API operation, as Stripe applies them.
fn api_call(
    state: &Shared,
    route: &str,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
    operation: impl FnOnce(&mut Data, &Map<String, Value>) -> (u16, Value),
) -> Response {
    if !authorized(state, headers) {
        let (status, body) = stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided.",
        );
        return respond(status, body, false);
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut data = state.data();
    if let Some(key) = &key {
        if let Some((original, status, body)) =
            data.idempotency.get(&(route.to_owned(), key.clone()))
        {
            if original != &params {
                let (status, body) = stripe_error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                );
                return respond(status, body, false);
            }
            return respond(*status, body.clone(), true);
        }
    }
    let form = nest(&params);
    let (status, body) = operation(&mut data, &form);
    // Stripe stores the result of every request that reached its API, errors included.
    if let Some(key) = key {
        data.idempotency
            .insert((route.to_owned(), key), (params, status, body.clone()));
    }
    respond(status, body, false)
}

fn respond(status: u16, body: Value, replayed: bool) -> Response {
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            "true".parse().expect("static header"),
        );
    }
    response
}

/// Turns Stripe's bracketed form keys (`metadata[order_id]`, `line_items[0][quantity]`) into
/// nested JSON objects (list indices become object keys).
fn nest(params: &[(String, String)]) -> Map<String, Value> {
    let mut root = Map::new();
    for (key, value) in params {
        let mut parts: Vec<&str> = Vec::new();
        let (head, mut rest) = key
            .split_once('[')
            .map_or((key.as_str(), ""), |(h, r)| (h, r));
        parts.push(head);
        while let Some((part, after)) = rest.split_once(']') {
            parts.push(part);
            rest = after.strip_prefix('[').unwrap_or(after);
        }
        let mut node = &mut root;
        for part in &parts[..parts.len() - 1] {
            node = node
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("form keys nest consistently");
        }
        node.insert(
            parts[parts.len() - 1].to_owned(),
            Value::String(value.clone()),
        );
    }
    root
}

fn positive_amount(raw: Option<&Value>) -> Option<i64> {
    raw.and_then(Value::as_str)
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|a| *a > 0)
}

fn missing(param: &str) -> (u16, Value) {
    let (status, mut body) = stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("parameter_missing"),
        &format!("Missing required param: {param}."),
    );
    body["error"]["param"] = json!(param);
    (status, body)
}

async fn create_payment_intent(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    api_call(&state, "payment_intents", &headers, params, |data, form| {
        let Some(amount) = positive_amount(form.get("amount")) else {
            return missing("amount");
        };
        let Some(currency) = form.get("currency").and_then(Value::as_str) else {
            return missing("currency");
        };
        let Some(token) = form
            .get("shared_payment_granted_token")
            .and_then(Value::as_str)
        else {
            return missing("shared_payment_granted_token");
        };
        if !token.starts_with("spt_") {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such shared_payment_granted_token: '{token}'"),
            );
        }
        if data.used_tokens.contains(token) {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("shared_payment_granted_token_already_used"),
                "This shared payment token has already been used.",
            );
        }
        let status = if token.starts_with("spt_requires_payment_method") {
            "requires_payment_method"
        } else if token.starts_with("spt_requires_action") {
            "requires_action"
        } else {
            "succeeded"
        };
        let intent = json!({
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "currency": currency,
            "status": if token.starts_with("spt_decline") { "requires_payment_method" } else { status },
            "metadata": form.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "shared_payment_granted_token": token,
            "latest_charge": (status == "succeeded").then(|| new_id("ch")),
        });
        data.used_tokens.insert(token.to_owned());
        data.payment_intents.push(intent.clone());
        if token.starts_with("spt_decline") {
            let (status, mut body) = stripe_error(
                StatusCode::PAYMENT_REQUIRED,
                "card_error",
                Some("card_declined"),
                "Your card was declined.",
            );
            body["error"]["decline_code"] = json!("generic_decline");
            body["error"]["payment_intent"] = intent;
            return (status, body);
        }
        (200, intent)
    })
}

async fn list_payment_intents(State(state): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    api_call(&state, "list", &headers, Vec::new(), |data, _| {
        let mut all = data.payment_intents.clone();
        all.reverse();
        (
            200,
            json!({"object": "list", "data": all, "has_more": false}),
        )
    })
}

async fn create_session(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    let base = state.base_url.clone();
    api_call(
        &state,
        "checkout_sessions",
        &headers,
        params,
        |data, form| {
            if form.get("mode").and_then(Value::as_str) != Some("payment") {
                return missing("mode");
            }
            let Some(item) = form.get("line_items").and_then(|l| l.get("0")).cloned() else {
                return missing("line_items");
            };
            let Some(unit_amount) = positive_amount(item.pointer("/price_data/unit_amount")) else {
                return missing("line_items[0][price_data][unit_amount]");
            };
            let Some(currency) = item.pointer("/price_data/currency").and_then(Value::as_str)
            else {
                return missing("line_items[0][price_data][currency]");
            };
            let quantity = item
                .get("quantity")
                .and_then(Value::as_str)
                .and_then(|q| q.parse::<i64>().ok())
                .unwrap_or(1);
            for required in ["success_url", "cancel_url"] {
                if !form.contains_key(required) {
                    return missing(required);
                }
            }
            let id = new_id("cs");
            let session = json!({
                "id": id,
                "object": "checkout.session",
                "mode": "payment",
                "status": "open",
                "payment_status": "unpaid",
                "amount_total": unit_amount * quantity,
                "currency": currency,
                "customer_email": form.get("customer_email"),
                "client_reference_id": form.get("client_reference_id"),
                "metadata": form.get("metadata").cloned().unwrap_or_else(|| json!({})),
                "success_url": form.get("success_url"),
                "cancel_url": form.get("cancel_url"),
                "expires_at": form.get("expires_at").and_then(Value::as_str).and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or_else(|| chrono::Utc::now().timestamp() + 86_400),
                "payment_intent": null,
                "url": format!("{base}/pay/{id}"),
            });
            data.sessions.insert(id, session.clone());
            (200, session)
        },
    )
}

async fn get_session(
    State(state): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    api_call(
        &state,
        "get_session",
        &headers,
        Vec::new(),
        |data, _| match data.sessions.get(&id) {
            Some(s) => (200, s.clone()),
            None => no_such_session(&id),
        },
    )
}

fn no_such_session(id: &str) -> (u16, Value) {
    stripe_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such checkout.session: '{id}'"),
    )
}

async fn expire_session(
    State(state): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut event = None;
    let response = api_call(&state, "expire_session", &headers, Vec::new(), |data, _| {
        let Some(mut session) = data.sessions.get(&id).cloned() else {
            return no_such_session(&id);
        };
        if session["status"] != "open" {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "Only Checkout Sessions with a status in [\"open\"] can be expired.",
            );
        }
        session["status"] = json!("expired");
        data.sessions.insert(id.clone(), session.clone());
        event = Some(state.new_event(data, "checkout.session.expired", session.clone()));
        (200, session)
    });
    if let Some(event) = event {
        state.deliver(&event).await;
    }
    response
}

async fn create_refund(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    api_call(&state, "refunds", &headers, params, |data, form| {
        let Some(intent_id) = form.get("payment_intent").and_then(Value::as_str) else {
            return missing("payment_intent");
        };
        let Some(intent) = data
            .payment_intents
            .iter()
            .find(|p| p["id"] == intent_id && p["status"] == "succeeded")
            .cloned()
        else {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such payment_intent: '{intent_id}'"),
            );
        };
        let refunded: i64 = data
            .refunds
            .iter()
            .filter(|r| r["payment_intent"] == intent_id)
            .filter_map(|r| r["amount"].as_i64())
            .sum();
        let amount = match form.get("amount") {
            Some(raw) => match positive_amount(Some(raw)) {
                Some(a) => a,
                None => return missing("amount"),
            },
            None => intent["amount"].as_i64().unwrap_or(0) - refunded,
        };
        if amount + refunded > intent["amount"].as_i64().unwrap_or(0) {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("charge_already_refunded"),
                "The refund amount exceeds what remains of the charge.",
            );
        }
        let refund = json!({
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent_id,
            "status": "succeeded",
            "metadata": form.get("metadata").cloned().unwrap_or_else(|| json!({})),
        });
        data.refunds.push(refund.clone());
        (200, refund)
    })
}

async fn list_refunds(State(state): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    api_call(&state, "list", &headers, Vec::new(), |data, _| {
        (
            200,
            json!({"object": "list", "data": data.refunds, "has_more": false}),
        )
    })
}

async fn payment_page(State(state): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(session) = state.data().sessions.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "No such checkout session.").into_response();
    };
    let amount = session["amount_total"].as_i64().unwrap_or(0);
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Pay</title></head><body>\
         <h1>Stripe stand-in checkout</h1><p>Amount: {}.{:02} {}</p><p>Status: {}</p>\
         <form method=\"post\"><button type=\"submit\">Pay</button></form></body></html>",
        amount / 100,
        amount % 100,
        session["currency"].as_str().unwrap_or("").to_uppercase(),
        session["status"].as_str().unwrap_or(""),
    ))
    .into_response()
}

async fn pay(State(state): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let event = match state.complete_session(&id) {
        Ok(event) => event,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    state.deliver(&event).await;
    let success = state
        .data()
        .sessions
        .get(&id)
        .and_then(|s| s["success_url"].as_str().map(str::to_owned));
    match success {
        Some(url) => Redirect::to(&url).into_response(),
        None => Html("Paid.").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracketed_keys_nest() {
        let form = nest(&[
            ("metadata[order_id]".into(), "ord_1".into()),
            (
                "line_items[0][price_data][unit_amount]".into(),
                "500".into(),
            ),
            ("mode".into(), "payment".into()),
        ]);
        assert_eq!(form["metadata"]["order_id"], "ord_1");
        assert_eq!(form["line_items"]["0"]["price_data"]["unit_amount"], "500");
        assert_eq!(form["mode"], "payment");
    }

    #[test]
    fn signature_matches_stripes_scheme() {
        // The scheme documented by Stripe: HMAC-SHA256 over "timestamp.payload", hex encoded.
        let header = sign("whsec_test", "{}", 1_700_000_000);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
        mac.update(b"1700000000.{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(header, format!("t=1700000000,v1={expected}"));
    }
}
