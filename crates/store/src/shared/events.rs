//! The event log: rows written by the units of work that record changes, read oldest first.

use async_trait::async_trait;
use sqlx::Row as _;
use storefront_app::ports::{EventFilter, EventStore, StoreResult};
use storefront_domain::event::{Event, EventType};
use storefront_domain::ids::{AccountId, AgentId, EventId};
use storefront_domain::timestamp::format as ts;

use super::common::{backend, corrupt, parse_json, parse_ts, placeholders, to_json};
use super::db;
use super::webhooks::{enabled_endpoints, insert_delivery_row};
use storefront_domain::webhook::{WebhookDelivery, WebhookEndpoint};

#[async_trait]
impl EventStore for db::Adapter {
    async fn list_events(&self, f: &EventFilter) -> StoreResult<Vec<Event>> {
        let kinds = if f.kinds.is_empty() {
            String::new()
        } else {
            format!("AND type IN ({})", placeholders(5, f.kinds.len()))
        };
        // In commit order (see `insert_event_rows`): a reader that continues after the last
        // event it saw misses nothing.
        let sql = format!(
            "SELECT * FROM events WHERE account_id = $1 AND ($2 IS NULL OR agent_id = $2)
               AND ($3 IS NULL OR position > (SELECT position FROM events WHERE id = $3)) {kinds}
             ORDER BY position LIMIT $4"
        );
        let mut query = sqlx::query(&sql)
            .bind(f.account.as_str())
            .bind(f.agent.as_ref().map(|a| a.as_str().to_owned()))
            .bind(f.after.as_deref())
            .bind(i64::from(f.limit) + 1);
        for kind in &f.kinds {
            query = query.bind(kind.as_str());
        }
        let rows = query.fetch_all(self.reader()).await.map_err(backend)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn newest_event(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
    ) -> StoreResult<Option<EventId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM events WHERE account_id = $1 AND ($2 IS NULL OR agent_id = $2)
             ORDER BY position DESC LIMIT 1",
        )
        .bind(account.as_str())
        .bind(agent.map(|a| a.as_str().to_owned()))
        .fetch_optional(self.reader())
        .await
        .map_err(backend)?;
        Ok(id.map(EventId::from_trusted))
    }

    async fn get_event(&self, id: &EventId) -> StoreResult<Option<Event>> {
        self.find_one(
            "SELECT * FROM events WHERE id = $1",
            id.as_str(),
            event_from_row,
        )
        .await
    }
}

/// Writes events inside the caller's transaction, each with its position in the log, and queues
/// a delivery of each to every enabled webhook endpoint that asked for it (the outbox: an event
/// and its deliveries commit or vanish together).
///
/// Positions follow commit order within an account: the account is locked first
/// (`db::EVENT_ORDER_LOCK`, held to commit), so no transaction can take a position for the
/// account while another that took an earlier one has not committed yet.
pub(super) async fn insert_event_rows(
    conn: &mut db::Connection,
    events: &[Event],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO events (id, account_id, agent_id, type, data, created_at, position)
         VALUES ($1, $2, $3, $4, $5, $6, {})",
        db::NEXT_EVENT_POSITION
    );
    let mut endpoints: Vec<WebhookEndpoint> = Vec::new();
    let mut endpoints_of: Option<&AccountId> = None;
    for e in events {
        if endpoints_of != Some(&e.account_id) {
            if let Some(lock) = db::EVENT_ORDER_LOCK {
                sqlx::query(lock)
                    .bind(e.account_id.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
            }
            endpoints = enabled_endpoints(conn, &e.account_id).await?;
            endpoints_of = Some(&e.account_id);
        }
        sqlx::query(&sql)
            .bind(e.id.as_str())
            .bind(e.account_id.as_str())
            .bind(e.agent_id.as_ref().map(|a| a.as_str().to_owned()))
            .bind(e.kind.as_str())
            .bind(to_json(&e.data))
            .bind(ts(&e.created_at))
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        for endpoint in endpoints
            .iter()
            .filter(|w| w.wants(e.kind, e.agent_id.as_ref()))
        {
            insert_delivery_row(conn, &WebhookDelivery::of_event(endpoint, e)).await?;
        }
    }
    Ok(())
}

fn event_from_row(r: &db::Row) -> StoreResult<Event> {
    let kind: String = r.get("type");
    Ok(Event {
        id: EventId::from_trusted(r.get("id")),
        kind: EventType::parse(&kind).ok_or_else(|| corrupt("event type"))?,
        account_id: AccountId::from_trusted(r.get("account_id")),
        agent_id: r
            .get::<Option<String>, _>("agent_id")
            .map(AgentId::from_trusted),
        data: parse_json(r.get("data"))?,
        created_at: parse_ts(r.get("created_at"))?,
    })
}
