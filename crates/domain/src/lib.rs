//! The storefront's domain: pure types and rules with no knowledge of HTTP, SQL, MCP or the
//! terminal. Everything here is deterministic; time and randomness are passed in by callers.

pub mod account;
pub mod agent;
pub mod catalog;
pub mod checkout;
pub mod egress;
pub mod error;
pub mod event;
pub mod governance;
pub mod idempotency;
pub mod ids;
pub mod input;
pub mod job;
pub mod json;
pub mod ledger;
pub mod money;
pub mod order;
pub mod payment;
pub mod pricing;
pub mod quote;
pub mod service;
pub mod timestamp;
pub mod webhook;

pub use error::{DomainError, ErrorCode, PaymentDemand};
