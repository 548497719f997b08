//! `storefront events [--follow]`: the event log, then (with `--follow`) the live stream
//! (Server-Sent Events), resumed with `Last-Event-ID` whenever the connection drops, so that no
//! event is printed twice or missed.

use super::{view, Client, Failure, Outcome};
use serde_json::Value;
use std::time::Duration;

/// Prints the events after `after`, then follows the stream if asked.
pub(super) async fn run(
    client: &Client,
    after: Option<String>,
    types: Option<String>,
    follow: bool,
) -> Result<Outcome, Failure> {
    let json_output = client.conn.json;
    let mut cursor = after;
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        if let Some(c) = &cursor {
            query.push(("after", c.clone()));
        }
        if let Some(t) = &types {
            query.push(("type", t.clone()));
        }
        let page = client.get_with("/api/v1/events", &query).await?;
        for event in page["events"].as_array().into_iter().flatten() {
            show(event, json_output);
            cursor = event["id"].as_str().map(str::to_owned);
        }
        if page["next_cursor"].is_null() {
            break;
        }
    }
    if !follow {
        return Ok(Outcome::Done);
    }
    follow_stream(client, cursor, types, json_output).await
}

/// One event: a line of text, or with `--json` one JSON object a line (NDJSON).
fn show(event: &Value, json_output: bool) {
    if json_output {
        crate::say!("{event}");
        return;
    }
    let data = &event["data"];
    let subject = data["id"].as_str().unwrap_or("-");
    let state = data["status"].as_str().unwrap_or("");
    crate::say!(
        "{}  {:<26} {} {}",
        event["created_at"].as_str().unwrap_or("-"),
        event["type"].as_str().unwrap_or("?"),
        subject,
        state
    );
    if event["type"] == "approval.requested" {
        crate::say!(
            "    {} asks for {}: {}",
            data["agent_name"].as_str().unwrap_or("an agent"),
            view::money(&data["amount_minor"], &data["currency"]),
            data["reason"].as_str().unwrap_or("")
        );
    }
}

/// Follows the stream until interrupted. A dropped connection is resumed after the last event
/// printed, waiting a little longer each time the server cannot be reached (up to 10 s).
async fn follow_stream(
    client: &Client,
    mut cursor: Option<String>,
    types: Option<String>,
    json_output: bool,
) -> Result<Outcome, Failure> {
    let url = format!(
        "{}/api/v1/events/stream",
        client.conn.url.trim_end_matches('/')
    );
    let mut pause = Duration::from_millis(500);
    loop {
        let mut request = client.http.get(&url);
        if let Some(key) = &client.conn.api_key {
            request = request.bearer_auth(key);
        }
        if let Some(c) = &cursor {
            request = request.header("last-event-id", c);
        }
        if let Some(t) = &types {
            request = request.query(&[("type", t)]);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                pause = Duration::from_millis(500);
                read_stream(response, &mut cursor, json_output).await;
            }
            Ok(response) if response.status().is_client_error() => {
                let body: Value = response.json().await.unwrap_or_default();
                return Err(Failure::Refused(body["error"].clone()));
            }
            Ok(response) => {
                eprintln!("the stream was refused ({}); retrying", response.status());
            }
            Err(e) => eprintln!("cannot reach {}: {e}; retrying", client.conn.url),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// Prints the events of one connection until it ends.
async fn read_stream(
    mut response: reqwest::Response,
    cursor: &mut Option<String>,
    json_output: bool,
) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            // Comment lines (heartbeats) carry no data.
            let data = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|l| l.strip_prefix(' ').unwrap_or(l))
                .collect::<Vec<_>>()
                .join("\n");
            if let Ok(event) = serde_json::from_str::<Value>(&data) {
                show(&event, json_output);
                *cursor = event["id"].as_str().map(str::to_owned);
            }
        }
    }
}
