//! Services, their resource tokens, and provisioning history.

use async_trait::async_trait;
use sqlx::Row as _;
use storefront_app::page::PageRequest;
use storefront_app::ports::{ResourceToken, ServiceStore, StoreResult};
use storefront_domain::ids::{AccountId, AgentId, ServiceId};
use storefront_domain::service::{Service, ServiceStatus};
use storefront_domain::timestamp::format as ts;

use super::common::{backend, commit, corrupt, newest_first, parse_ts, placeholders, to_json};
use super::db;
use super::rows::service_from_row;

#[async_trait]
impl ServiceStore for db::Adapter {
    async fn get_service(&self, id: &ServiceId) -> StoreResult<Option<Service>> {
        self.find_one(
            "SELECT * FROM services WHERE id = $1",
            id.as_str(),
            service_from_row,
        )
        .await
    }

    async fn recent_provisioning_seconds(
        &self,
        product_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT created_at, activated_at FROM services WHERE product_id = $1 AND activated_at IS NOT NULL
             ORDER BY id DESC LIMIT $2",
        )
        .bind(product_id)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(
                    (parse_ts(r.get("activated_at"))? - parse_ts(r.get("created_at"))?)
                        .num_seconds(),
                )
            })
            .collect()
    }

    async fn find_resource_token(&self, token_hash: &str) -> StoreResult<Option<ResourceToken>> {
        self.find_one(
            "SELECT * FROM resource_tokens WHERE token_hash = $1",
            token_hash,
            |r| {
                Ok(ResourceToken {
                    token_hash: r.get("token_hash"),
                    service_id: ServiceId::from_trusted(r.get("service_id")),
                    scope: r.get("scope"),
                    created_at: parse_ts(r.get("created_at"))?,
                })
            },
        )
        .await
    }

    async fn list_services(
        &self,
        account: &AccountId,
        page: &PageRequest,
    ) -> StoreResult<Vec<Service>> {
        let mut params = vec![account.as_str()];
        let sql = newest_first("services", "", page, &mut params);
        let mut query = sqlx::query(&sql);
        for param in params {
            query = query.bind(param);
        }
        let rows = query.fetch_all(self.reader()).await.map_err(backend)?;
        rows.iter().map(service_from_row).collect()
    }

    async fn count_services(
        &self,
        statuses: &[ServiceStatus],
    ) -> StoreResult<Vec<(ServiceStatus, i64)>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = placeholders(1, statuses.len());
        let sql = format!(
            "SELECT status, COUNT(*) FROM services WHERE status IN ({}) GROUP BY status",
            placeholders
        );
        let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
        for s in statuses {
            query = query.bind(s.as_str());
        }
        let rows = query.fetch_all(self.reader()).await.map_err(backend)?;
        rows.into_iter()
            .map(|(status, n)| {
                ServiceStatus::parse(&status)
                    .map(|s| (s, n))
                    .ok_or_else(|| corrupt("service status"))
            })
            .collect()
    }

    async fn agent_services(
        &self,
        agent: &AgentId,
        statuses: &[ServiceStatus],
    ) -> StoreResult<Vec<Service>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = placeholders(2, statuses.len());
        let sql = format!(
            "SELECT s.* FROM services s JOIN orders o ON o.id = s.order_id
             WHERE o.agent_id = $1 AND s.status IN ({}) ORDER BY s.id",
            placeholders
        );
        let mut query = sqlx::query(&sql).bind(agent.as_str());
        for s in statuses {
            query = query.bind(s.as_str());
        }
        let rows = query.fetch_all(self.reader()).await.map_err(backend)?;
        rows.iter().map(service_from_row).collect()
    }

    async fn revoke_resource_tokens(&self, service: &ServiceId) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM resource_tokens WHERE service_id = $1")
            .bind(service.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted)
    }

    async fn services_in(&self, statuses: &[ServiceStatus]) -> StoreResult<Vec<Service>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = placeholders(1, statuses.len());
        let sql = format!(
            "SELECT * FROM services WHERE status IN ({}) ORDER BY id",
            placeholders
        );
        let mut query = sqlx::query(&sql);
        for s in statuses {
            query = query.bind(s.as_str());
        }
        let rows = query.fetch_all(self.reader()).await.map_err(backend)?;
        rows.iter().map(service_from_row).collect()
    }
}

pub(super) async fn insert_service_row(conn: &mut db::Connection, s: &Service) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO services (id, order_id, account_id, product_id, status, display_name, image, region, authorized_key,
                               host, ssh_port, ssh_username, host_key_fingerprint, private_key_sealed, lease_seconds,
                               expires_at, management_capabilities, created_at, updated_at, host_public_key, machine_size,
                               backups_enabled)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
    )
    .bind(s.id.as_str())
    .bind(s.order_id.as_str())
    .bind(s.account_id.as_str())
    .bind(&s.product_id)
    .bind(s.status.as_str())
    .bind(&s.display_name)
    .bind(&s.image)
    .bind(&s.region)
    .bind(s.authorized_key.as_deref())
    .bind(s.host.as_deref())
    .bind(s.ssh_port.map(i64::from))
    .bind(&s.ssh_username)
    .bind(s.host_key_fingerprint.as_deref())
    .bind(s.private_key_sealed.as_deref())
    .bind(s.lease_seconds)
    .bind(s.expires_at.as_ref().map(ts))
    .bind(to_json(&s.management_capabilities))
    .bind(ts(&s.created_at))
    .bind(ts(&s.updated_at))
    .bind(s.host_public_key.as_deref())
    .bind(s.machine_size.as_ref().map(to_json))
    .bind(s.backups_enabled)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Conditional on the current status, like `update_order_row`.
pub(super) async fn update_service_row(
    conn: &mut db::Connection,
    s: &Service,
    expected: &[ServiceStatus],
) -> StoreResult<bool> {
    if expected.is_empty() {
        return Ok(false);
    }
    let placeholders = placeholders(13, expected.len());
    let sql = format!(
        "UPDATE services SET status = $1, image = $2, host = $3, ssh_port = $4, host_key_fingerprint = $5,
                             private_key_sealed = $6, expires_at = $7, updated_at = $8, lease_seconds = $9,
                             activated_at = $11, host_public_key = $12
         WHERE id = $10 AND status IN ({})",
        placeholders
    );
    let mut query = sqlx::query(&sql)
        .bind(s.status.as_str())
        .bind(&s.image)
        .bind(s.host.as_deref())
        .bind(s.ssh_port.map(i64::from))
        .bind(s.host_key_fingerprint.as_deref())
        .bind(s.private_key_sealed.as_deref())
        .bind(s.expires_at.as_ref().map(ts))
        .bind(ts(&s.updated_at))
        .bind(s.lease_seconds)
        .bind(s.id.as_str())
        .bind(s.activated_at.as_ref().map(ts))
        .bind(s.host_public_key.as_deref());
    for status in expected {
        query = query.bind(status.as_str());
    }
    Ok(query
        .execute(&mut *conn)
        .await
        .map_err(backend)?
        .rows_affected()
        == 1)
}

pub(super) async fn insert_token_rows(
    conn: &mut db::Connection,
    tokens: &[ResourceToken],
) -> StoreResult<()> {
    for token in tokens {
        sqlx::query("INSERT INTO resource_tokens (token_hash, service_id, scope, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&token.token_hash)
            .bind(token.service_id.as_str())
            .bind(&token.scope)
            .bind(ts(&token.created_at))
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}
