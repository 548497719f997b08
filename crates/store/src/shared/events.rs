//! The event log: rows written by the units of work that record changes, read oldest first.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row as _;
use std::sync::Arc;
use storefront_app::ports::{EventFilter, EventStore, StoreResult};
use storefront_domain::event::{Event, EventType};
use storefront_domain::ids::{AccountId, AgentId, EventId};
use storefront_domain::timestamp::format as ts;

use super::common::{backend, corrupt, parse_json, parse_ts, placeholders, to_json, Statements};
use super::db;
use super::webhooks::{enabled_endpoints, insert_delivery_row};
use storefront_domain::webhook::WebhookDelivery;

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
/// Inserts events — each account's run of them with one statement — and queues their webhook
/// deliveries.
pub(super) async fn insert_event_rows(
    conn: &mut db::Connection,
    events: &[Event],
) -> StoreResult<()> {
    insert_event_rows_of_locked(conn, events, None).await
}

/// [`insert_event_rows`] in a transaction that already holds `locked`'s account row (it just
/// updated the balance): that account's events skip `db::EVENT_ORDER_LOCK`, one round trip
/// fewer while the lock is held.
pub(super) async fn insert_event_rows_of_locked(
    conn: &mut db::Connection,
    events: &[Event],
    locked: Option<&AccountId>,
) -> StoreResult<()> {
    for run in events.chunk_by(|a, b| a.account_id == b.account_id) {
        let account = &run[0].account_id;
        if let Some(lock) = db::EVENT_ORDER_LOCK.filter(|_| locked != Some(account)) {
            sqlx::query(lock)
                .bind(account.as_str())
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        }
        let mut insert = Statements::new("");
        push_events(&mut insert, run);
        let has_endpoints: Vec<bool> = insert
            .build_query_scalar()
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
        if has_endpoints.first().copied().unwrap_or(false) {
            queue_deliveries(conn, run).await?;
        }
    }
    Ok(())
}

/// The insert of one account's run of events. It answers, for each event, whether the account
/// has an enabled webhook endpoint: most accounts have none, and then the events cost this one
/// statement ([`queue_deliveries`] only when it says yes).
pub(super) fn push_events(q: &mut Statements<'_>, run: &[Event]) {
    let Some(first) = run.first() else {
        return;
    };
    q.push("INSERT INTO events (id, account_id, agent_id, type, data, created_at, position) ");
    push_event_values(q, run, db::next_event_position);
    q.push(" RETURNING EXISTS (SELECT 1 FROM webhook_endpoints WHERE account_id = ")
        .push_bind(first.account_id.as_str().to_owned())
        .push(" AND enabled)");
}

/// The insert of one account's run of events as a CTE of a statement whose `debit` CTE updates
/// the account's balance (PostgreSQL's one-statement order): the rows are produced from the
/// debit's answer, so they take their positions (the column's default) only once the debit
/// holds the account's row (`db::EVENT_ORDER_LOCK`'s lock), in the run's order, and none are
/// written when it matched nothing.
pub(super) fn push_events_after_debit(q: &mut Statements<'_>, run: &[Event]) {
    q.push(
        "INSERT INTO events (id, account_id, agent_id, type, data, created_at) \
         SELECT e.id, e.account_id, e.agent_id, e.type, e.data, e.created_at FROM debit, (",
    );
    push_event_values(q, run, |nth| nth);
    q.push(") AS e (id, account_id, agent_id, type, data, created_at, nth) ORDER BY e.nth");
}

/// The `VALUES` of a run of events: each event's columns, then `last(nth)` (`nth` from 1).
fn push_event_values<D: std::fmt::Display>(
    q: &mut Statements<'_>,
    run: &[Event],
    last: impl Fn(usize) -> D,
) {
    let mut nth = 0;
    // Events of one change share their snapshot: it is serialized once.
    let mut previous: Option<(&Arc<Value>, String)> = None;
    q.push_values(run, |mut row, e| {
        nth += 1;
        let data = match &previous {
            Some((shared, text)) if Arc::ptr_eq(shared, &e.data) => text.clone(),
            _ => {
                let text = to_json(&e.data);
                previous = Some((&e.data, text.clone()));
                text
            }
        };
        row.push_bind(e.id.as_str().to_owned())
            .push_bind(e.account_id.as_str().to_owned())
            .push_bind(e.agent_id.as_ref().map(|a| a.as_str().to_owned()))
            .push_bind(e.kind.as_str())
            .push_bind(data)
            .push_bind(ts(&e.created_at))
            .push(last(nth));
    });
}

/// Queues a delivery of each event of one account's run to every enabled endpoint of the
/// account that asked for it.
pub(super) async fn queue_deliveries(conn: &mut db::Connection, run: &[Event]) -> StoreResult<()> {
    let Some(first) = run.first() else {
        return Ok(());
    };
    let endpoints = enabled_endpoints(conn, &first.account_id).await?;
    for e in run {
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
        data: Arc::new(parse_json(r.get("data"))?),
        created_at: parse_ts(r.get("created_at"))?,
    })
}
