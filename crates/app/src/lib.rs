//! The storefront's use-cases and the ports its adapters implement.
//!
//! Transports (REST, MCP, the dashboard; the CLI through REST) call `App` methods with a `Principal`
//! and typed inputs, and translate the `DomainError` they get back exactly once. Storage,
//! fulfillment and time come in through the traits of [`ports`], so the same use-cases run on
//! SQLite or PostgreSQL, against real upstreams or test stand-ins, on a real or a manual clock.

pub mod accounts;
pub mod agents;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod catalog;
pub mod checkouts;
pub mod clock;
pub mod dashboard;
pub mod delivery;
pub mod device;
pub mod discovery;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod jobs;
mod key_cache;
pub mod leases;
pub mod lifecycle;
pub mod machines;
pub mod operations;
pub mod orders;
pub mod page;
pub mod payments;
pub mod ports;
pub mod principal;
pub mod quotes;
pub mod secrets;
pub mod views;
pub mod webhooks;

pub use app::{App, AppSettings, AppState};
pub use clock::{Clock, ManualClock, SystemClock};
pub use principal::Principal;
pub use storefront_domain as domain;
