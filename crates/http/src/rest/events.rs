//! The event log (docs/api.md, "Events"): what happened to an account's orders, oldest first.

use super::{ok, Success};
use crate::error::ApiError;
use crate::extract::{int_param, ApiQuery, Caller};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use storefront_app::events::EventView;
use storefront_app::events::{EventCursor, Start, StreamPermit};
use storefront_app::page::PageRequest;
use storefront_app::App;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(stream))
}

/// How often an idle stream looks for new events in the log (which any replica may have
/// written), and how often it sends a heartbeat comment when nothing happens.
const STREAM_POLL: Duration = Duration::from_millis(500);
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Events read from the log at a time.
const STREAM_PAGE: u32 = 100;

#[derive(Serialize, ToSchema)]
pub(crate) struct EventList {
    events: Vec<EventView>,
    /// The id to pass as `after` for the next page; `null` when there is none yet.
    next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventQuery {
    /// Only events after this one (`evt_...`); without it, from the oldest.
    after: Option<String>,
    /// Page size, 1-100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Only these types, comma-separated (`order.paid,order.fulfilled`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kinds: Option<String>,
}

/// Events of the account (an owner key) or of the agent (an agent key), oldest first.
#[utoipa::path(operation_id = "list_events", get, path = "/events", tag = "events", params(EventQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of events", body = Envelope<EventList>),
        (status = 400, description = "A bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token has no events", body = ErrorEnvelope),
    ))]
async fn list(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> Result<Success, ApiError> {
    let page = PageRequest::parse(int_param("limit", q.limit.as_deref())?, None)?;
    let kinds = split_types(q.kinds.as_deref());
    let events = app.list_events(&principal, q.after, &kinds, &page).await?;
    Ok(ok(EventList {
        events: events.items,
        next_cursor: events.next_cursor,
    }))
}

fn split_types(raw: Option<&str>) -> Vec<String> {
    raw.map(|k| k.split(',').map(|t| t.trim().to_owned()).collect())
        .unwrap_or_default()
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// Start after this event (`evt_...`); the `Last-Event-ID` header wins when both are sent.
    /// Without either, only events from now on.
    after: Option<String>,
    /// Only these types, comma-separated.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kinds: Option<String>,
}

/// What a stream carries between polls.
struct Tail {
    app: App,
    cursor: EventCursor,
    ready: VecDeque<EventView>,
    _permit: StreamPermit,
}

impl Tail {
    /// The next event: from the last page read, else from the log once it has one; `None` when
    /// the server shuts down or the log cannot be read (the client resumes with
    /// `Last-Event-ID`).
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                let sse = SseEvent::default()
                    .id(&event.id)
                    .event(event.kind.as_str())
                    .json_data(&event)
                    .expect("events serialize");
                return Some((Ok(sse), self));
            }
            match self.app.next_events(&mut self.cursor, STREAM_PAGE).await {
                Ok(found) if !found.is_empty() => self.ready.extend(found),
                Ok(_) => {
                    tokio::select! {
                        () = tokio::time::sleep(STREAM_POLL) => {}
                        () = self.app.shutdown_started() => return None,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "event stream ended: the log could not be read");
                    return None;
                }
            }
        }
    }
}

/// Events as they happen, as Server-Sent Events: `id:` the event id, `event:` its type, `data:`
/// the event as `GET /events` shows it. Reconnect with `Last-Event-ID` to resume with nothing
/// missed; a comment line every 15 s keeps idle connections open. At most 5 streams per key.
#[utoipa::path(operation_id = "stream_events", get, path = "/events/stream", tag = "events",
    params(StreamQuery, ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: the stream resumes after it")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A stream of events (text/event-stream)", content_type = "text/event-stream", body = String),
        (status = 400, description = "An unknown event id or type", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token has no events", body = ErrorEnvelope),
        (status = 429, description = "The key already holds 5 streams", body = ErrorEnvelope),
    ))]
async fn stream(
    State(app): State<App>,
    Caller(principal): Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A bad id or type is refused now, as JSON, before the stream starts.
    let cursor = app
        .event_cursor(
            &principal,
            resume.or(q.after),
            &split_types(q.kinds.as_deref()),
            Start::Now,
        )
        .await?;
    let permit = app.open_event_stream(&principal)?;
    let tail = Tail {
        app,
        cursor,
        ready: VecDeque::new(),
        _permit: permit,
    };
    let events = futures_util::stream::unfold(tail, Tail::next);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT))
        .into_response())
}
