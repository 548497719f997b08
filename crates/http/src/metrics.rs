//! Prometheus metrics (`GET /metrics`): one recorder per process, request counts and latency
//! histograms by route and status, what the use-cases count (orders, jobs, store failures), and
//! gauges read at each scrape (machines by status, the job backlog, the webhook queue). Every metric has `# HELP`
//! and `# TYPE`. With `metrics_token` set, only a request bearing it reads them.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;
use storefront_app::app::App;

use crate::error::ApiError;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds: from a cached read (a millisecond) to the request time limit.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's recorder, installed on first use (several apps in one test process share it).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Histogram samples pile up in the recorder until they are folded into their buckets:
        // without a scrape, that happens only here. Every 5 s keeps memory flat under load.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            });
        // Another recorder may already be installed (a test harness); then this one only renders
        // what it was given, which is still a valid, if empty, exposition.
        if metrics::set_global_recorder(recorder).is_ok() {
            describe();
        }
        handle
    })
}

/// The `# HELP` of every metric the process records.
fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        "storefront_http_requests_total",
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        "storefront_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by method, route template and status."
    );
    describe_counter!(
        "storefront_orders_total",
        "Orders paid, by product (every rail)."
    );
    describe_counter!(
        "storefront_jobs_total",
        "Background jobs run, by kind and result."
    );
    describe_counter!(
        "storefront_store_failures_total",
        "Database failures, by kind."
    );
    describe_counter!(
        "storefront_webhook_deliveries_total",
        "Webhook delivery attempts, by result (delivered, retry, failed)."
    );
    describe_histogram!(
        "storefront_webhook_attempt_seconds",
        Unit::Seconds,
        "Time a webhook delivery attempt took, answer or not."
    );
}

/// Counts and times every request by its route template (never the raw path, which carries ids)
/// and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("storefront_http_requests_total", &labels).increment(1);
    metrics::histogram!("storefront_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

pub async fn render(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    // A header that is not text carries no token (the route may be open).
    let bearer = crate::extract::bearer_token(&headers).ok().flatten();
    app.authorize_metrics(bearer)?;
    // The gauges are this app's state read now, so they are written here rather than through
    // the process-wide recorder (which several apps in one process would overwrite).
    let now = app.operations().await?;
    let mut text = handle().render();
    gauge(
        &mut text,
        "storefront_services",
        "Machines in each status that is not final.",
        now.services_by_status
            .iter()
            .map(|(status, n)| (format!("{{status=\"{}\"}}", status.as_str()), *n)),
    );
    gauge(
        &mut text,
        "storefront_jobs_due",
        "Queued background jobs whose time has come.",
        [(String::new(), now.jobs_due)],
    );
    gauge(
        &mut text,
        "storefront_jobs_running",
        "Background jobs a worker holds.",
        [(String::new(), now.jobs_running)],
    );
    gauge(
        &mut text,
        "storefront_oldest_due_job_seconds",
        "How long the longest-waiting due job has waited, in seconds (0 when none waits).",
        [(String::new(), now.oldest_due_job_seconds)],
    );
    gauge(
        &mut text,
        "storefront_webhook_queue_depth",
        "Webhook deliveries waiting to be delivered (due or not).",
        [(String::new(), now.webhooks_waiting)],
    );
    gauge(
        &mut text,
        "storefront_webhook_oldest_pending_seconds",
        "Age of the oldest webhook delivery not yet delivered, in seconds (0 when none waits).",
        [(String::new(), now.oldest_webhook_seconds)],
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Appends one gauge in the Prometheus text format: its HELP and TYPE, then a sample per label
/// set.
fn gauge(
    text: &mut String,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, i64)>,
) {
    use std::fmt::Write;
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(text, "{name}{labels} {value}");
    }
}
