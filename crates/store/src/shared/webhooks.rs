//! Webhook endpoints and the delivery queue: deliveries are queued with their events
//! ([`super::events::insert_event_rows`]) and claimed under a lease, like jobs.

use async_trait::async_trait;
use sqlx::Row as _;
use storefront_app::ports::{DeliveryFinish, StoreResult, WebhookStore};
use storefront_domain::ids::{AccountId, AgentId, DeliveryId, EventId, WebhookEndpointId};
use storefront_domain::timestamp::{format as ts, Timestamp};
use storefront_domain::webhook::{DeliveryStatus, WebhookDelivery, WebhookEndpoint};

use super::common::{backend, commit, corrupt, parse_json, parse_ts, to_json};
use super::db;
use super::events::insert_event_rows;

#[async_trait]
impl WebhookStore for db::Adapter {
    async fn insert_webhook_endpoint(&self, e: &WebhookEndpoint) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, account_id, agent_id, url, events, description, enabled,
                 disabled_reason, failing_since, secret_sealed, previous_secret_sealed, previous_secret_until,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(e.id.as_str())
        .bind(e.account_id.as_str())
        .bind(e.agent_id.as_ref().map(|a| a.as_str().to_owned()))
        .bind(&e.url)
        .bind(to_json(&e.events))
        .bind(&e.description)
        .bind(e.enabled)
        .bind(&e.disabled_reason)
        .bind(e.failing_since.as_ref().map(ts))
        .bind(&e.secret_sealed)
        .bind(&e.previous_secret_sealed)
        .bind(e.previous_secret_until.as_ref().map(ts))
        .bind(ts(&e.created_at))
        .bind(ts(&e.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn get_webhook_endpoint(
        &self,
        id: &WebhookEndpointId,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        self.find_one(
            "SELECT * FROM webhook_endpoints WHERE id = $1",
            id.as_str(),
            endpoint_from_row,
        )
        .await
    }

    async fn list_webhook_endpoints(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_endpoints WHERE account_id = $1 AND ($2 IS NULL OR agent_id = $2)
               AND ($3 IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
        )
        .bind(account.as_str())
        .bind(agent.map(|a| a.as_str().to_owned()))
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn update_webhook_endpoint(&self, e: &WebhookEndpoint) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, events = $2, description = $3, enabled = $4,
                 disabled_reason = CASE WHEN $4 THEN NULL ELSE disabled_reason END,
                 failing_since = CASE WHEN $4 AND NOT enabled THEN NULL ELSE failing_since END,
                 secret_sealed = $5, previous_secret_sealed = $6, previous_secret_until = $7, updated_at = $8
             WHERE id = $9",
        )
        .bind(&e.url)
        .bind(to_json(&e.events))
        .bind(&e.description)
        .bind(e.enabled)
        .bind(&e.secret_sealed)
        .bind(&e.previous_secret_sealed)
        .bind(e.previous_secret_until.as_ref().map(ts))
        .bind(ts(&e.updated_at))
        .bind(e.id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn delete_webhook_endpoint(&self, id: &WebhookEndpointId) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // Under the account's event lock: a transaction writing the account's events (and
        // queueing deliveries to this endpoint) either commits first, and its deliveries are
        // deleted here, or starts after, and no longer finds the endpoint.
        let account: Option<String> =
            sqlx::query_scalar("SELECT account_id FROM webhook_endpoints WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if let (Some(account), Some(lock)) = (&account, db::EVENT_ORDER_LOCK) {
            sqlx::query(lock)
                .bind(account)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted == 1)
    }

    async fn insert_delivery(&self, delivery: &WebhookDelivery) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_delivery_row(&mut tx, delivery).await?;
        commit(tx).await
    }

    async fn get_delivery(&self, id: &DeliveryId) -> StoreResult<Option<WebhookDelivery>> {
        self.find_one(
            "SELECT * FROM webhook_deliveries WHERE id = $1",
            id.as_str(),
            delivery_from_row,
        )
        .await
    }

    async fn list_deliveries(
        &self,
        endpoint: &WebhookEndpointId,
        before: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 AND ($2 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(endpoint.as_str())
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn retry_delivery(&self, id: &DeliveryId, now: Timestamp) -> StoreResult<bool> {
        let now = ts(&now);
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1
             WHERE id = $2 AND (locked_until IS NULL OR locked_until < $1)",
        )
        .bind(&now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        commit(tx).await?;
        Ok(updated == 1)
    }

    async fn claim_deliveries(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(WebhookDelivery, WebhookEndpoint)>> {
        let sql = format!(
            "UPDATE webhook_deliveries SET locked_by = $1, locked_until = $2, attempts = attempts + 1,
                 last_attempt_at = $3, updated_at = $3
             WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
                          WHERE d.status = 'pending' AND d.next_attempt_at <= $3
                            AND (d.locked_until IS NULL OR d.locked_until < $3) AND e.enabled
                          ORDER BY d.next_attempt_at, d.id LIMIT $4 {})
             RETURNING *",
            db::DELIVERY_CLAIM_LOCK
        );
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(worker)
            .bind(ts(&lease_until))
            .bind(ts(&now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        let deliveries = rows
            .iter()
            .map(delivery_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        // Each endpoint read once, however many of its deliveries were claimed.
        let mut endpoints: Vec<WebhookEndpoint> = Vec::new();
        let mut claimed = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let known = endpoints.iter().find(|e| e.id == delivery.endpoint_id);
            let endpoint = match known {
                Some(e) => e.clone(),
                None => {
                    let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1")
                        .bind(delivery.endpoint_id.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(backend)?;
                    let e = endpoint_from_row(&row)?;
                    endpoints.push(e.clone());
                    e
                }
            };
            claimed.push((delivery, endpoint));
        }
        commit(tx).await?;
        Ok(claimed)
    }

    async fn finish_delivery(&self, f: &DeliveryFinish<'_>) -> StoreResult<bool> {
        let at = ts(&f.result.at);
        let mut tx = self.begin().await?;
        let held = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, next_attempt_at = $2, last_status_code = $3,
                 last_error = $4, last_duration_ms = $5, locked_by = NULL, locked_until = NULL, updated_at = $6
             WHERE id = $7 AND locked_by = $8",
        )
        .bind(f.status.as_str())
        .bind(f.next_attempt_at.as_ref().map(ts))
        .bind(f.result.status_code.map(i64::from))
        .bind(&f.result.error)
        .bind(f.result.duration_ms)
        .bind(&at)
        .bind(f.delivery.as_str())
        .bind(f.worker)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        if !held {
            return Ok(false);
        }
        if let Some(disable) = f.disable {
            // The failure record and the decision to disable are read and written by the same
            // statements, so concurrent attempts of one endpoint cannot both disable it.
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2",
            )
            .bind(&at)
            .bind(f.endpoint.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            let disabled = sqlx::query(
                "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $1, updated_at = $2
                 WHERE id = $3 AND enabled AND ($4 OR failing_since <= $5)",
            )
            .bind(disable.reason)
            .bind(&at)
            .bind(f.endpoint.as_str())
            .bind(disable.now)
            .bind(ts(&disable.if_failing_since))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
                == 1;
            if disabled {
                insert_event_rows(&mut tx, std::slice::from_ref(&disable.event)).await?;
            }
        } else {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1")
                .bind(f.endpoint.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        commit(tx).await?;
        Ok(true)
    }

    async fn delivery_backlog(&self) -> StoreResult<(i64, Option<Timestamp>)> {
        let (waiting, oldest): (i64, Option<String>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(self.reader())
        .await
        .map_err(backend)?;
        Ok((waiting, oldest.as_deref().map(parse_ts).transpose()?))
    }
}

/// The account's enabled endpoints, for the deliveries of an event being written.
pub(super) async fn enabled_endpoints(
    conn: &mut db::Connection,
    account: &AccountId,
) -> StoreResult<Vec<WebhookEndpoint>> {
    let rows = sqlx::query("SELECT * FROM webhook_endpoints WHERE account_id = $1 AND enabled")
        .bind(account.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    rows.iter().map(endpoint_from_row).collect()
}

/// Queues a delivery; one that is already queued (same endpoint and event) stays as it is.
pub(super) async fn insert_delivery_row(
    conn: &mut db::Connection,
    d: &WebhookDelivery,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, event_type, body, status,
             attempts, next_attempt_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         ON CONFLICT (endpoint_id, event_id) DO NOTHING",
    )
    .bind(d.id.as_str())
    .bind(d.endpoint_id.as_str())
    .bind(d.account_id.as_str())
    .bind(d.event_id.as_str())
    .bind(&d.event_type)
    .bind(&d.body)
    .bind(d.status.as_str())
    .bind(d.attempts)
    .bind(d.next_attempt_at.as_ref().map(ts))
    .bind(ts(&d.created_at))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

fn opt_ts(r: &db::Row, column: &str) -> StoreResult<Option<Timestamp>> {
    r.get::<Option<String>, _>(column)
        .as_deref()
        .map(parse_ts)
        .transpose()
}

fn endpoint_from_row(r: &db::Row) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: WebhookEndpointId::from_trusted(r.get("id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        agent_id: r
            .get::<Option<String>, _>("agent_id")
            .map(AgentId::from_trusted),
        url: r.get("url"),
        events: parse_json(r.get("events"))?,
        description: r.get("description"),
        enabled: r.get("enabled"),
        disabled_reason: r.get("disabled_reason"),
        failing_since: opt_ts(r, "failing_since")?,
        secret_sealed: r.get("secret_sealed"),
        previous_secret_sealed: r.get("previous_secret_sealed"),
        previous_secret_until: opt_ts(r, "previous_secret_until")?,
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
    })
}

fn delivery_from_row(r: &db::Row) -> StoreResult<WebhookDelivery> {
    let status: String = r.get("status");
    Ok(WebhookDelivery {
        id: DeliveryId::from_trusted(r.get("id")),
        endpoint_id: WebhookEndpointId::from_trusted(r.get("endpoint_id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        event_id: EventId::from_trusted(r.get("event_id")),
        event_type: r.get("event_type"),
        body: r.get("body"),
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("delivery status"))?,
        attempts: r.get("attempts"),
        next_attempt_at: opt_ts(r, "next_attempt_at")?,
        last_attempt_at: opt_ts(r, "last_attempt_at")?,
        last_status_code: r.get("last_status_code"),
        last_error: r.get("last_error"),
        last_duration_ms: r.get("last_duration_ms"),
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
    })
}
