//! Webhooks and live event streams (docs/events.md): deliveries to a receiver on loopback,
//! verified by the official Python `standardwebhooks` package; retries, rotation, disabling,
//! a worker killed mid-delivery, two workers on one database, the SSRF rules, SSE resume, and
//! accounts that never see each other's events.
//!
//! Every receiver listens on 127.0.0.1; no test sends a packet off this machine.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{Backend, TestServer};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storefront_app::ports::WebhookTransport;

/// A guard against a hung test, not a timing assumption.
const GUARD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
}

impl Received {
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Debug, Clone)]
enum Answer {
    Status(u16),
    Redirect(String),
    /// Never answers (a receiver that hangs; the attempt is in flight until it is given up).
    Hang,
}

#[derive(Clone, Default)]
struct ReceiverState {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answers for the next requests, in order; 200 once they run out (or `otherwise`).
    script: Arc<Mutex<VecDeque<Answer>>>,
    otherwise: Arc<Mutex<Option<Answer>>>,
    arrived: Arc<tokio::sync::Notify>,
}

/// An HTTP server on 127.0.0.1 that records what it is sent and answers as scripted.
struct Receiver {
    url: String,
    state: ReceiverState,
}

impl Receiver {
    async fn start() -> Self {
        let state = ReceiverState::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.script.lock().unwrap().extend(answers);
    }

    fn always(&self, answer: Answer) {
        *self.state.otherwise.lock().unwrap() = Some(answer);
    }

    fn got(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived.
    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(GUARD, async {
            loop {
                let arrived = self.state.arrived.notified();
                if self.got().len() >= n {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} webhooks never arrived (got {})", self.got().len()));
    }
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: String) -> Response {
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    state.got.lock().unwrap().push(Received { headers, body });
    state.arrived.notify_waiters();
    let answer = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| state.otherwise.lock().unwrap().clone())
        .unwrap_or(Answer::Status(200));
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::Redirect(to) => (StatusCode::FOUND, [("location", to)]).into_response(),
        Answer::Hang => std::future::pending().await,
    }
}

/// Verifies deliveries with the official Python library: `None` for each that verifies with its
/// secret, else the library's complaint. `None` overall when the library is not installed.
fn verify_with_official_client(items: &[(&str, &Received)]) -> Option<Vec<Option<String>>> {
    let python = std::env::var("STOREFRONT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let installed = std::process::Command::new(&python)
        .args(["-c", "import standardwebhooks.webhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var("STOREFRONT_TEST_CLIENTS").as_deref() != Ok("required"),
            "STOREFRONT_TEST_CLIENTS=required but the Python standardwebhooks package is not installed"
        );
        eprintln!("signatures not verified by the official client: standardwebhooks is not installed (tests/clients/requirements.txt)");
        return None;
    }
    let input: Vec<Value> = items
        .iter()
        .map(|(secret, r)| json!({"secret": secret, "headers": r.headers, "body": r.body}))
        .collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/verify_webhooks.py"
    );
    let mut child = std::process::Command::new(&python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the verifier failed");
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn assert_all_verify(items: &[(&str, &Received)]) {
    if let Some(results) = verify_with_official_client(items) {
        for (result, (_, r)) in results.iter().zip(items) {
            assert_eq!(result, &None, "delivery {} does not verify", r.id());
        }
    }
}

async fn relaxed(backend: &Backend) -> TestServer {
    TestServer::start_with(backend, |c| c.webhooks.allow_private_targets = true).await
}

fn search(query: &str) -> Value {
    json!({"product_id": "web-search", "configuration": {"query": query}})
}

async fn endpoint(s: &TestServer, key: &str, url: &str, events: Value) -> (String, String) {
    let r = s
        .post(
            "/api/v1/webhook-endpoints",
            Some(key),
            &json!({"url": url, "events": events, "description": "test receiver"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["data"]["webhook_endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = r.body["data"]["secret"].as_str().unwrap().to_owned();
    (id, secret)
}

async fn deliveries(s: &TestServer, key: &str, endpoint: &str) -> Vec<Value> {
    let r = s
        .get(
            &format!("/api/v1/webhook-endpoints/{endpoint}/deliveries"),
            Some(key),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"]["deliveries"].as_array().unwrap().clone()
}

async fn buy(s: &TestServer, key: &str, idempotency_key: &str) -> String {
    let r = s.order(Some(key), idempotency_key, &search("hooks")).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["data"]["order"]["id"].as_str().unwrap().to_owned()
}

dual_test!(deliveries_are_signed_retried_and_rotated_and_the_official_client_verifies_them);
async fn deliveries_are_signed_retried_and_rotated_and_the_official_client_verifies_them(
    backend: Backend,
) {
    let s = relaxed(&backend).await;
    let receiver = Receiver::start().await;
    let (_, owner) = s.account(10_000).await;
    let (id, secret) = endpoint(
        &s,
        &owner,
        &receiver.url,
        json!(["order.paid", "order.fulfilled"]),
    )
    .await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let shown = s
        .get(&format!("/api/v1/webhook-endpoints/{id}"), Some(&owner))
        .await;
    assert_eq!(shown.status, 200);
    assert!(
        !shown.body.to_string().contains(&secret),
        "the secret is shown only once"
    );
    assert_eq!(shown.body["data"]["webhook_endpoint"]["enabled"], true);

    // The first attempt of one of the two deliveries gets a 500.
    receiver.script([Answer::Status(500)]);
    let order = buy(&s, &owner, "wh-1").await;
    let first = s.app.deliver_due_webhooks("w", 10).await.unwrap();
    assert_eq!(first.len(), 2, "order.paid and order.fulfilled were due");
    assert!(
        s.app
            .deliver_due_webhooks("w", 10)
            .await
            .unwrap()
            .is_empty(),
        "the failed one waits for its backoff"
    );
    s.clock.advance(chrono::Duration::seconds(6));
    assert_eq!(s.app.deliver_due_webhooks("w", 10).await.unwrap().len(), 1);

    let got = receiver.got();
    assert_eq!(got.len(), 3);
    let mut types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    types.dedup();
    assert_eq!(types, ["order.fulfilled", "order.paid"]);
    for r in &got {
        let body = r.json();
        assert_eq!(body["data"]["id"], order.as_str(), "the order is the data");
        assert_eq!(body["id"], r.id(), "the body names its webhook-id");
        assert!(body["timestamp"].as_str().is_some());
        assert!(r.headers["webhook-signature"].starts_with("v1,"));
        assert!(r.headers["webhook-timestamp"].parse::<i64>().is_ok());
    }
    // The retry sent the same message: same id, same bytes.
    let retried: Vec<&Received> = got.iter().filter(|r| r.id() == got[0].id()).collect();
    let retried = if retried.len() == 2 {
        retried
    } else {
        got.iter().filter(|r| r.id() == got[1].id()).collect()
    };
    assert_eq!(retried.len(), 2, "one message was sent twice");
    assert_eq!(retried[0].body, retried[1].body);

    let listed = deliveries(&s, &owner, &id).await;
    assert_eq!(listed.len(), 2);
    for d in &listed {
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(d["last_status_code"], 200);
        assert!(d["next_attempt_at"].is_null());
    }
    let attempts: Vec<i64> = listed
        .iter()
        .map(|d| d["attempts"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts.iter().sum::<i64>(), 3, "{attempts:?}");

    let items: Vec<(&str, &Received)> = got.iter().map(|r| (secret.as_str(), r)).collect();
    assert_all_verify(&items);
    // A body changed on the way does not verify (the check can fail).
    let mut forged = got[0].clone();
    forged.body = forged.body.replace("order.", "order_");
    if let Some(results) = verify_with_official_client(&[(secret.as_str(), &forged)]) {
        assert!(results[0].is_some(), "a forged body must not verify");
    }

    // Rotation: both the old and the new secret verify the next deliveries.
    let rotated = s
        .post(
            &format!("/api/v1/webhook-endpoints/{id}/rotate-secret"),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let new_secret = rotated.body["data"]["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    buy(&s, &owner, "wh-2").await;
    assert_eq!(s.app.deliver_due_webhooks("w", 10).await.unwrap().len(), 2);
    let after_rotation: Vec<Received> = receiver.got()[3..].to_vec();
    for r in &after_rotation {
        assert_eq!(
            r.headers["webhook-signature"].split(' ').count(),
            2,
            "both signatures during the overlap"
        );
    }
    let mut items: Vec<(&str, &Received)> = Vec::new();
    for r in &after_rotation {
        items.push((secret.as_str(), r));
        items.push((new_secret.as_str(), r));
    }
    assert_all_verify(&items);

    // After the overlap, only the new secret signs.
    s.clock.advance(chrono::Duration::hours(25));
    let ping = s
        .post(
            &format!("/api/v1/webhook-endpoints/{id}/test"),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(ping.status, 202, "{:?}", ping.body);
    assert_eq!(ping.body["data"]["delivery"]["event_type"], "ping");
    assert_eq!(s.app.deliver_due_webhooks("w", 10).await.unwrap().len(), 1);
    let ping = receiver.got().pop().unwrap();
    assert_eq!(ping.json()["type"], "ping");
    assert_eq!(ping.headers["webhook-signature"].split(' ').count(), 1);
}

dual_test!(endpoints_that_answer_410_or_fail_for_three_days_are_disabled_with_an_event);
async fn endpoints_that_answer_410_or_fail_for_three_days_are_disabled_with_an_event(
    backend: Backend,
) {
    let s = relaxed(&backend).await;
    let (_, owner) = s.account(10_000).await;
    let gone = Receiver::start().await;
    gone.always(Answer::Status(410));
    let failing = Receiver::start().await;
    failing.always(Answer::Status(500));
    let (gone_id, gone_secret) = endpoint(&s, &owner, &gone.url, json!(["order.paid"])).await;
    let (failing_id, failing_secret) =
        endpoint(&s, &owner, &failing.url, json!(["order.paid"])).await;

    buy(&s, &owner, "wh-gone").await;
    assert_eq!(s.app.deliver_due_webhooks("w", 10).await.unwrap().len(), 2);
    // Refused or not, what was sent was signed (later attempts carry timestamps days ahead of
    // the real clock, which the library rightly refuses, so the first ones are checked).
    assert_all_verify(&[
        (gone_secret.as_str(), &gone.got()[0]),
        (failing_secret.as_str(), &failing.got()[0]),
    ]);
    let shown = s
        .get(
            &format!("/api/v1/webhook-endpoints/{gone_id}"),
            Some(&owner),
        )
        .await;
    let endpoint = &shown.body["data"]["webhook_endpoint"];
    assert_eq!(endpoint["enabled"], false, "{endpoint}");
    assert!(endpoint["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("410"));
    assert_eq!(
        deliveries(&s, &owner, &gone_id).await[0]["status"],
        "failed"
    );

    // The failing endpoint keeps being tried on its schedule until three days of failures.
    let started = s.app.clock().now();
    let mut hours = 0;
    loop {
        let shown = s
            .get(
                &format!("/api/v1/webhook-endpoints/{failing_id}"),
                Some(&owner),
            )
            .await;
        if shown.body["data"]["webhook_endpoint"]["enabled"] == false {
            break;
        }
        assert!(hours < 24 * 6, "never disabled");
        s.clock.advance(chrono::Duration::hours(1));
        hours += 1;
        s.app.deliver_due_webhooks("w", 10).await.unwrap();
    }
    let elapsed = s.app.clock().now() - started;
    assert!(
        elapsed >= chrono::Duration::days(3),
        "disabled after {elapsed} only"
    );
    let attempts = failing.got().len();
    assert!((9..=11).contains(&attempts), "{attempts} attempts");

    let events = s
        .get(
            "/api/v1/events?type=webhook_endpoint.disabled",
            Some(&owner),
        )
        .await;
    let events = events.body["data"]["events"].as_array().unwrap().clone();
    let disabled: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(disabled, [gone_id.as_str(), failing_id.as_str()]);
    assert!(events[1]["data"]["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("3 days"));

    // Enabled again, it is tried again, and an answer brings it back.
    failing.always(Answer::Status(200));
    let enabled = s
        .send(
            s.client
                .patch(s.url(&format!("/api/v1/webhook-endpoints/{failing_id}")))
                .bearer_auth(&owner)
                .json(&json!({"enabled": true})),
        )
        .await;
    assert_eq!(enabled.status, 200, "{:?}", enabled.body);
    assert!(enabled.body["data"]["webhook_endpoint"]["disabled_reason"].is_null());
    let waiting = deliveries(&s, &owner, &failing_id).await;
    let retry = s
        .post(
            &format!(
                "/api/v1/webhook-endpoints/deliveries/{}/retry",
                waiting[0]["id"].as_str().unwrap()
            ),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(retry.status, 202, "{:?}", retry.body);
    s.app.deliver_due_webhooks("w", 10).await.unwrap();
    assert_eq!(
        deliveries(&s, &owner, &failing_id).await[0]["status"],
        "delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssrf_attempts_are_refused_with_a_clear_error() {
    let strict = TestServer::start(&Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    let (_, owner) = strict.account(0).await;
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    for (url, expected) in [
        (format!("http://127.0.0.1:{port}/hooks"), "https"),
        (format!("https://127.0.0.1:{port}/hooks"), "loopback"),
        (format!("https://[::1]:{port}/hooks"), "loopback"),
        (format!("https://localhost:{port}/hooks"), "resolves to"),
        (
            "https://169.254.169.254/latest/meta-data/".to_owned(),
            "metadata",
        ),
        ("https://10.0.0.8/hooks".to_owned(), "private"),
    ] {
        let r = strict
            .post(
                "/api/v1/webhook-endpoints",
                Some(&owner),
                &json!({"url": url, "events": ["*"]}),
            )
            .await;
        assert_eq!(r.status, 400, "{url}: {:?}", r.body);
        assert_eq!((r.code(), r.param()), ("validation_error", "url"));
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{url}: {message}");
        assert!(r.body["error"]["suggestion"]
            .as_str()
            .unwrap()
            .contains("allow_private_targets"));
    }

    // At connect time: a host name that resolves to loopback is refused before any connection.
    let transport =
        storefront_providers::webhooks::HttpWebhookTransport::new(false, Duration::from_secs(5))
            .unwrap();
    let refused = transport
        .post(&format!("https://localhost:{port}/hooks"), &[], "{}")
        .await
        .unwrap_err();
    assert!(refused.contains("loopback"), "{refused}");

    // A redirect to loopback is not followed, even where private targets are allowed.
    let relaxed = relaxed(&Backend::Sqlite).await;
    let (_, owner) = relaxed.account(10_000).await;
    let redirector = Receiver::start().await;
    redirector.always(Answer::Redirect(receiver.url.clone()));
    let (id, _) = endpoint(&relaxed, &owner, &redirector.url, json!(["order.paid"])).await;
    buy(&relaxed, &owner, "wh-redirect").await;
    relaxed.app.deliver_due_webhooks("w", 10).await.unwrap();
    assert_eq!(redirector.got().len(), 1);
    let d = &deliveries(&relaxed, &owner, &id).await[0];
    assert_eq!(d["status"], "pending", "{d}");
    assert_eq!(d["last_status_code"], 302);
    assert!(d["last_error"]
        .as_str()
        .unwrap()
        .contains("redirects are not followed"));
    assert!(
        receiver.got().is_empty(),
        "nothing reached the redirect's target"
    );
}

dual_test!(a_worker_killed_mid_delivery_loses_nothing);
async fn a_worker_killed_mid_delivery_loses_nothing(backend: Backend) {
    let s = relaxed(&backend).await;
    let (_, owner) = s.account(10_000).await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::Hang, Answer::Hang]);
    let (id, secret) = endpoint(
        &s,
        &owner,
        &receiver.url,
        json!(["order.paid", "order.fulfilled"]),
    )
    .await;
    buy(&s, &owner, "wh-kill").await;

    // A real worker process takes both deliveries and is killed while the receiver holds them.
    let mut worker =
        common::binary::storefront(&s.config.data_dir, s.config.database_url.as_deref())
            .args(["serve", "--role", "worker"])
            .env("STOREFRONT_DATA_DIR", &s.config.data_dir)
            .env("STOREFRONT_WEBHOOK_ALLOW_PRIVATE", "true")
            .spawn()
            .unwrap();
    receiver.wait_for(2).await;
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    assert!(
        s.app
            .deliver_due_webhooks("w", 10)
            .await
            .unwrap()
            .is_empty(),
        "the dead worker's leases still hold"
    );
    assert!(deliveries(&s, &owner, &id)
        .await
        .iter()
        .all(|d| d["status"] == "pending"));

    // Once the leases pass, another worker sends both again.
    s.clock.advance(chrono::Duration::minutes(3));
    assert_eq!(s.app.deliver_due_webhooks("w", 10).await.unwrap().len(), 2);
    let listed = deliveries(&s, &owner, &id).await;
    for d in &listed {
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(d["attempts"], 2, "the killed attempt counts");
    }
    let got = receiver.got();
    // Both processes signed with the same secret (sealed in the database, opened by each).
    assert_all_verify(&got.iter().map(|r| (secret.as_str(), r)).collect::<Vec<_>>());
    let mut ids: Vec<String> = got.iter().map(|r| r.id().to_owned()).collect();
    ids.sort();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[2], ids[3]);
}

dual_test!(two_workers_on_one_database_make_each_attempt_once);
async fn two_workers_on_one_database_make_each_attempt_once(backend: Backend) {
    let s = relaxed(&backend).await;
    let other = storefront::bootstrap::build_app(
        &s.config,
        storefront::bootstrap::open_store(&s.config).await.unwrap(),
        s.clock.clone(),
        s.base.clone(),
    )
    .await
    .unwrap();
    let (_, owner) = s.account(100_000).await;
    let receiver = Receiver::start().await;
    let (_, secret) = endpoint(&s, &owner, &receiver.url, json!(["*"])).await;
    for i in 0..5 {
        buy(&s, &owner, &format!("wh-two-{i}")).await;
    }
    // Every first attempt fails, so each message is attempted exactly twice.
    receiver.script((0..15).map(|_| Answer::Status(503)));
    let drain = |app: storefront_app::App, name: &'static str| async move {
        let mut total = 0;
        loop {
            let n = app.deliver_due_webhooks(name, 4).await.unwrap().len();
            if n == 0 {
                return total;
            }
            total += n;
        }
    };
    let (a, b) = tokio::join!(drain(s.app.clone(), "one"), drain(other.clone(), "two"));
    assert_eq!(a + b, 15, "15 events, one attempt each");
    s.clock.advance(chrono::Duration::seconds(6));
    let (a, b) = tokio::join!(drain(s.app.clone(), "one"), drain(other.clone(), "two"));
    assert_eq!(a + b, 15);
    let got = receiver.got();
    assert_all_verify(&got.iter().map(|r| (secret.as_str(), r)).collect::<Vec<_>>());
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in got {
        *per_id.entry(r.id().to_owned()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 15);
    assert!(per_id.values().all(|n| *n == 2), "{per_id:?}");
}

/// Reads Server-Sent Events from a streaming answer.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(s: &TestServer, key: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut req = s
            .client
            .get(s.url("/api/v1/events/stream"))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.unwrap()
    }

    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event: (id, type, data).
    async fn next(&mut self) -> (String, String, Value) {
        tokio::time::timeout(GUARD, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let frame: String = self.buffer.drain(..end + 2).collect();
                    let field = |name: &str| {
                        frame
                            .lines()
                            .find_map(|l| l.strip_prefix(name))
                            .map(str::to_owned)
                    };
                    // Heartbeats are comments (lines starting with ':'), not events.
                    if let (Some(id), Some(kind), Some(data)) =
                        (field("id: "), field("event: "), field("data: "))
                    {
                        return (id, kind, serde_json::from_str(&data).unwrap());
                    }
                    continue;
                }
                let chunk = self.response.chunk().await.unwrap().expect("stream open");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("an event within the guard")
    }
}

dual_test!(an_event_stream_resumes_after_last_event_id_without_gaps);
async fn an_event_stream_resumes_after_last_event_id_without_gaps(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, owner) = s.account(100_000).await;
    buy(&s, &owner, "sse-before").await;

    // From now on: the events before the stream opened are not replayed.
    let mut stream = SseReader::new(SseReader::open(&s, &owner, None).await);
    let order = buy(&s, &owner, "sse-1").await;
    let mut seen = Vec::new();
    for expected in ["order.created", "order.paid", "order.fulfilled"] {
        let (id, kind, data) = stream.next().await;
        assert_eq!(kind, expected);
        assert_eq!(data["id"], id.as_str(), "data is the event");
        assert_eq!(data["data"]["id"], order.as_str());
        seen.push(id);
    }
    drop(stream);

    // Two orders while disconnected; resuming after the last id seen gets exactly them.
    buy(&s, &owner, "sse-2").await;
    buy(&s, &owner, "sse-3").await;
    let mut stream =
        SseReader::new(SseReader::open(&s, &owner, seen.last().map(String::as_str)).await);
    for _ in 0..6 {
        seen.push(stream.next().await.0);
    }
    let log = s.get("/api/v1/events?limit=100", Some(&owner)).await;
    let log: Vec<String> = log.body["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(log.len(), 12);
    assert_eq!(
        seen,
        log[3..],
        "every event since the stream opened, once, in order"
    );

    drop(stream);

    // A key holds at most five streams (a fresh key: the streams dropped above are released
    // only once the server notices).
    let (_, busy) = s.account(0).await;
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(SseReader::new(SseReader::open(&s, &busy, None).await));
    }
    let sixth = SseReader::open(&s, &busy, None).await;
    assert_eq!(sixth.status(), 429);
    let body: Value = sixth.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    drop(open);

    // Another account cannot resume from this account's events.
    let (_, stranger) = s.account(0).await;
    let r = s
        .send(
            s.client
                .get(s.url("/api/v1/events/stream"))
                .bearer_auth(&stranger)
                .header("last-event-id", &log[0]),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, "validation_error"));
    assert_eq!(r.param(), "after");
}

dual_test!(one_accounts_events_and_endpoints_are_invisible_to_another);
async fn one_accounts_events_and_endpoints_are_invisible_to_another(backend: Backend) {
    let s = relaxed(&backend).await;
    let (_, alice) = s.account(10_000).await;
    let (_, bob) = s.account(10_000).await;
    let alices = Receiver::start().await;
    let bobs = Receiver::start().await;
    let (alice_endpoint, _) = endpoint(&s, &alice, &alices.url, json!(["*"])).await;
    endpoint(&s, &bob, &bobs.url, json!(["*"])).await;
    buy(&s, &alice, "iso-1").await;
    s.app.deliver_due_webhooks("w", 20).await.unwrap();
    assert_eq!(alices.got().len(), 3);
    assert!(
        bobs.got().is_empty(),
        "bob's endpoint hears nothing of alice"
    );

    for path in [
        format!("/api/v1/webhook-endpoints/{alice_endpoint}"),
        format!("/api/v1/webhook-endpoints/{alice_endpoint}/deliveries"),
    ] {
        let r = s.get(&path, Some(&bob)).await;
        assert_eq!((r.status.as_u16(), r.code()), (404, "not_found"), "{path}");
    }
    let listed = s.get("/api/v1/webhook-endpoints", Some(&bob)).await;
    assert_eq!(
        listed.body["data"]["webhook_endpoints"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let delivery = deliveries(&s, &alice, &alice_endpoint).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .post(
            &format!("/api/v1/webhook-endpoints/deliveries/{delivery}/retry"),
            Some(&bob),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = s.get("/api/v1/events", Some(&bob)).await;
    assert!(r.body["data"]["events"].as_array().unwrap().is_empty());
}
