//! sqlx adapters of the store port: SQLite (the embedded default) and PostgreSQL (several
//! replicas on one database). The database URL selects the adapter; both run the same SQL
//! (`sql.rs`).

pub mod postgres;
mod sql;
pub mod sqlite;

use std::sync::Arc;
use storefront_app::ports::Store;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("could not open the database: {0}")]
    Connect(String),
    #[error("could not apply migrations: {0}")]
    Migrate(String),
}

/// Opens the store a URL names and applies its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, OpenError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(OpenError::UnsupportedUrl(redact_url(url)))
    }
}

/// A URL fit for logs and error messages: any password is replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
