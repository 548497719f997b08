//! The SQL shared by both adapters, written once.
//!
//! Both schemas store the same columns with the same types as far as the code sees them (text
//! ids, RFC 3339 text timestamps with milliseconds, JSON as text, 64-bit integers, booleans), and
//! every statement uses `$N` placeholders, which SQLite and PostgreSQL both accept. So one body of
//! code serves both: each backend module includes this directory as a module of its own
//! (`#[path = "shared/mod.rs"] mod shared;`) beside a `db` module that names its store type
//! (whose `begin()` opens a write transaction the backend's way and whose `reader()` is a pool
//! for reads), its database, row and connection types, and its lock clauses. The files are
//! ordinary modules, so rustfmt formats them and the compiler points into them; each one is
//! compiled once per backend.
//!
//! Concurrency does not rely on the backend's isolation level: every check that guards money or a
//! state change is part of the statement that makes the change (`UPDATE ... WHERE balance + x >=
//! 0`, `UPDATE ... WHERE status IN (...)`, `INSERT ... ON CONFLICT DO NOTHING`), so on PostgreSQL
//! the row lock plus READ COMMITTED's re-check of the WHERE clause serializes racing writers, and on
//! SQLite there is only ever one writer.

// The including backend module's `db`, for the files below (`use super::db;`).
use super::db;

mod accounts;
mod common;
mod events;
mod governance;
mod idempotency;
mod jobs;
mod orders;
mod payments;
mod quotes;
// Public to the backend module for what its inline reads (`db::read_inline`) map rows with
// (`rows::Columns`, `rows::Rows`); the mappers themselves stay `pub(super)`, private to `shared`.
pub(super) mod rows;
mod services;
mod settings;
mod webhooks;

// The backend's `begin()` reports a failure to open a transaction like every other failure.
pub(super) use common::backend;
// For the PostgreSQL adapter's test of the statement a page is read with (this module is
// compiled into both adapters; SQLite's tests do not use it).
#[cfg(test)]
#[allow(unused_imports)]
pub(super) use common::newest_first;
pub(super) use common::Statements;
