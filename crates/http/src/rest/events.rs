//! The event log (docs/api.md, "Events"): what happened to an account's orders, oldest first.

use super::{ok, Success};
use crate::error::ApiError;
use crate::extract::{int_param, ApiQuery, Caller};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use storefront_app::events::EventView;
use storefront_app::page::PageRequest;
use storefront_app::App;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(list))
}

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
    let kinds: Vec<String> = q
        .kinds
        .as_deref()
        .map(|k| k.split(',').map(|t| t.trim().to_owned()).collect())
        .unwrap_or_default();
    let events = app.list_events(&principal, q.after, &kinds, &page).await?;
    Ok(ok(EventList {
        events: events.items,
        next_cursor: events.next_cursor,
    }))
}
