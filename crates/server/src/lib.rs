//! The `storefront` binary's library half: configuration, wiring of the adapters into the
//! application, telemetry and the server loop. `main.rs` is only the command line.

pub mod agent;
pub mod bootstrap;
pub mod config;
pub mod output;
pub mod serve;
pub mod telemetry;
