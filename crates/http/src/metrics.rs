//! Prometheus metrics (`GET /metrics`): one recorder per process, request counts and latency
//! histograms by route and status, what the use-cases count (orders, jobs, store failures), and
//! gauges read at each scrape (machines by status, the job backlog, the webhook queue). Every metric has `# HELP`
//! and `# TYPE`. With `metrics_token` set, only a request bearing it reads them.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
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
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
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
        "storefront_sqlite_batches_total",
        "SQLite group commits (one fsync each)."
    );
    describe_counter!(
        "storefront_sqlite_batch_units_total",
        "Write units committed in SQLite group commits (per batch: units per fsync)."
    );
    describe_counter!(
        "storefront_sqlite_checkpoints_total",
        "SQLite WAL checkpoints run in the background."
    );
    describe_gauge!(
        "storefront_sqlite_wal_pages_behind",
        "SQLite WAL pages the last background checkpoint could not copy yet (a read holds them)."
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
/// and status. A route layer, because only inside the router is the template known; a service of
/// its own rather than `from_fn`, which clones the route it wraps for every request.
#[derive(Clone, Copy)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

/// See [`TrackLayer`].
#[derive(Clone)]
pub struct Track<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Tracked {
            started: Instant::now(),
            method: method_label(request.method()),
            route: request.extensions().get::<MatchedPath>().cloned(),
            answer: self.inner.call(request),
        }
    }
}

/// The answer of a tracked request, recorded when it is ready.
pub struct Tracked<F> {
    started: Instant,
    method: &'static str,
    route: Option<MatchedPath>,
    answer: F,
}

impl<F> Future for Tracked<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Ok(response) = std::task::ready!(Pin::new(&mut this.answer).poll(cx));
        let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let status = response.status().as_u16();
        HANDLES.with_borrow_mut(|handles| {
            let by_route = handles.entry((this.method, status)).or_default();
            // Looked up by `&str` first: the key is allocated only the first time.
            if !by_route.contains_key(route) {
                let labels = [
                    ("method", this.method.to_owned()),
                    ("route", route.to_owned()),
                    ("status", status.to_string()),
                ];
                let handles = (
                    metrics::counter!("storefront_http_requests_total", &labels),
                    metrics::histogram!("storefront_http_request_duration_seconds", &labels),
                );
                by_route.insert(route.into(), handles);
            }
            if let Some((counter, histogram)) = by_route.get(route) {
                counter.increment(1);
                histogram.record(this.started.elapsed().as_secs_f64());
            }
        });
        Poll::Ready(Ok(response))
    }
}

/// The request counter and latency histogram of each (method, status, route), by runtime thread:
/// making a metric's key (three label strings) and finding it in the recorder's registry cost
/// more than the counting itself. Bounded: methods are the standard ones (and `OTHER`), routes
/// the router's templates (and `unmatched`).
type Handles =
    HashMap<(&'static str, u16), HashMap<Box<str>, (metrics::Counter, metrics::Histogram)>>;

thread_local! {
    static HANDLES: RefCell<Handles> = RefCell::default();
}

/// The method as a label: a client can send any token as a method, and each would otherwise be a
/// new time series kept for the life of the process.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
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
