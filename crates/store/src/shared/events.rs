//! The event log: rows written by the units of work that record changes, read oldest first.

use async_trait::async_trait;
use sqlx::Row as _;
use storefront_app::ports::{EventFilter, EventStore, StoreResult};
use storefront_domain::event::{Event, EventType};
use storefront_domain::ids::{AccountId, AgentId, EventId};
use storefront_domain::timestamp::format as ts;

use super::common::{backend, corrupt, parse_json, parse_ts, placeholders, to_json};
use super::db;

#[async_trait]
impl EventStore for db::Adapter {
    async fn list_events(&self, f: &EventFilter) -> StoreResult<Vec<Event>> {
        let kinds = if f.kinds.is_empty() {
            String::new()
        } else {
            format!("AND type IN ({})", placeholders(5, f.kinds.len()))
        };
        let sql = format!(
            "SELECT * FROM events WHERE account_id = $1 AND ($2 IS NULL OR agent_id = $2)
               AND ($3 IS NULL OR id > $3) {kinds}
             ORDER BY id LIMIT $4"
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
}

pub(super) async fn insert_event_rows(
    conn: &mut db::Connection,
    events: &[Event],
) -> StoreResult<()> {
    for e in events {
        sqlx::query(
            "INSERT INTO events (id, account_id, agent_id, type, data, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.id.as_str())
        .bind(e.account_id.as_str())
        .bind(e.agent_id.as_ref().map(|a| a.as_str().to_owned()))
        .bind(e.kind.as_str())
        .bind(to_json(&e.data))
        .bind(ts(&e.created_at))
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
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
