//! Readiness probes and settings.

use async_trait::async_trait;
use storefront_app::ports::{SettingsStore, StoreResult};
use storefront_domain::timestamp::{format as ts, Timestamp};

use super::common::{backend, commit};
use super::db;

#[async_trait]
impl SettingsStore for db::Adapter {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.reader())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn probe_write(&self, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO write_probe (id, checked_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        )
        .bind(ts(&now))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn setting_or_init(&self, name: &str, initial: &str) -> StoreResult<String> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(initial)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let value: String = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await?;
        Ok(value)
    }

    async fn put_settings(&self, settings: &[(&str, &str)]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for (name, value) in settings {
            sqlx::query(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        commit(tx).await
    }
}
