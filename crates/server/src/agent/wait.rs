//! `--wait`: polls an order or a service until it is done, fast at first (a machine ready in a
//! second is reported in about a second), then backing off, never pausing longer than the
//! storefront's `Retry-After`; the progress line says what is happening now, in words.

use super::{report, Client, Outcome};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The pause before the next poll: half a second, growing by half each time, capped at ten
/// seconds and at what the storefront asked for.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const LONGEST: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn pause(&mut self, retry_after: Option<u64>) -> Duration {
        let asked = retry_after.map_or(Self::LONGEST, Duration::from_secs);
        let pause = self.next.min(asked).min(Self::LONGEST);
        self.next = (self.next * 3 / 2).min(Self::LONGEST);
        pause
    }
}

fn progress(quiet: bool) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// What an order is doing, as a person would say it.
fn order_state(order: &Value) -> String {
    let id = order["id"].as_str().unwrap_or("?");
    match order["status"].as_str().unwrap_or("?") {
        "awaiting_approval" => {
            let approval = &order["approval"];
            let expires = approval["expires_at"]
                .as_str()
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .map(|at| {
                    let minutes = (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                        .num_minutes()
                        .max(0);
                    format!(", expires in {minutes} min")
                })
                .unwrap_or_default();
            format!(
                "{id}: waiting for the owner's approval {}{expires}",
                approval["id"].as_str().unwrap_or("")
            )
        }
        "pending_payment" => format!("{id}: waiting for payment"),
        "awaiting_install_configuration" => format!("{id}: waiting for install configuration"),
        "paid" | "processing" if !order["service_id"].is_null() => {
            let estimate = order["provisioning_estimate"]["max_seconds"]
                .as_u64()
                .map(|s| format!(" (usually within {s}s)"))
                .unwrap_or_default();
            format!("{id}: provisioning the machine{estimate}")
        }
        "fulfilled" if order["credentials_available"] != true => {
            format!("{id}: paid; the machine is starting")
        }
        other => format!("{id}: {other}"),
    }
}

fn order_done(order: &Value) -> bool {
    match order["status"].as_str() {
        Some("fulfilled") => {
            order["service_id"].is_null() || order["credentials_available"] == true
        }
        Some("failed" | "canceled") => true,
        _ => false,
    }
}

/// Polls the order until it is done (machines: until their credentials are available).
pub async fn order(
    client: &Client,
    order: Value,
    timeout: Duration,
    quiet: bool,
) -> Result<Value, Outcome> {
    let id = order["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/api/v1/orders/{id}");
    let found = poll(client, &path, "order", timeout, quiet, order, |data| {
        let order = data["order"].clone();
        (order_done(&order), order_state(&order), order)
    })
    .await;
    if found.is_err() {
        eprintln!("check again with `storefront orders` (the order is {id})");
    }
    found
}

/// Polls a service until its status is one of `until` (or it failed).
pub async fn service(
    client: &Client,
    service: Value,
    until: &'static [&'static str],
    timeout: Duration,
    quiet: bool,
) -> Result<Value, Outcome> {
    let id = service["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/api/v1/services/{id}");
    poll(
        client,
        &path,
        "service",
        timeout,
        quiet,
        service,
        move |data| {
            let service = data["service"].clone();
            let status = service["status"].as_str().unwrap_or("?");
            let done = until.contains(&status) || status == "failed";
            (done, format!("{id}: {status}"), service)
        },
    )
    .await
}

/// Polls `path` (whose `data` holds the object under `key`) until `read` says done; answers the
/// last object read.
async fn poll(
    client: &Client,
    path: &str,
    key: &str,
    timeout: Duration,
    quiet: bool,
    first: Value,
    read: impl Fn(&Value) -> (bool, String, Value),
) -> Result<Value, Outcome> {
    let bar = progress(quiet);
    let started = Instant::now();
    let mut backoff = Backoff::new();
    // The first answer came with the action itself: shape it like a read.
    let mut data = serde_json::json!({ key: first });
    loop {
        let (done, state, current) = read(&data);
        bar.set_message(state);
        if done {
            bar.finish_and_clear();
            return Ok(current);
        }
        if started.elapsed() > timeout {
            bar.abandon();
            eprintln!("gave up waiting after {}s", timeout.as_secs());
            return Err(Outcome::TimedOut);
        }
        let retry_after = match client.get(path).await {
            Ok((answer, retry_after)) => {
                data = answer;
                retry_after
            }
            Err(f) => {
                bar.abandon();
                return Err(report(f, false));
            }
        };
        tokio::time::sleep(backoff.pause(retry_after)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_starts_fast_backs_off_and_never_waits_past_retry_after() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.pause(None), Duration::from_millis(500));
        assert_eq!(backoff.pause(None), Duration::from_millis(750));
        assert_eq!(
            backoff.pause(Some(0)),
            Duration::ZERO,
            "Retry-After caps it"
        );
        for _ in 0..20 {
            backoff.pause(None);
        }
        assert_eq!(backoff.pause(None), Backoff::LONGEST);
        assert_eq!(backoff.pause(Some(3)), Duration::from_secs(3));
    }

    #[test]
    fn the_progress_says_what_the_order_waits_for() {
        let waiting = serde_json::json!({
            "id": "ord_1", "status": "awaiting_approval",
            "approval": {"id": "apr_1", "expires_at": "2999-01-01T00:00:00Z"}
        });
        assert!(order_state(&waiting)
            .starts_with("ord_1: waiting for the owner's approval apr_1, expires in "));
        let provisioning = serde_json::json!({
            "id": "ord_2", "status": "processing", "service_id": "svc_1",
            "provisioning_estimate": {"max_seconds": 30}
        });
        assert_eq!(
            order_state(&provisioning),
            "ord_2: provisioning the machine (usually within 30s)"
        );
        assert!(!order_done(&provisioning));
    }
}
