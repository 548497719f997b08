//! Adapters behind the application's ports: fulfillers of instant products, the local machine
//! provisioner, and the payment gateways (Stripe Checkout for cards, MPP over Stripe).
//!
//! - [`offline_search::OfflineSearch`]: a ranked full-text search over a corpus shipped with
//!   the binary (the live catalog and the storefront's own documentation), so `web-search`
//!   returns real results on a machine without internet.
//! - [`http_upstream::HttpUpstream`]: maps a product onto an operator's JSON API with a request
//!   template and a response mapping (for example a SearXNG instance).

pub mod http_upstream;
pub mod local;
pub mod lxd;
pub mod mpp;
pub mod offline_search;
pub mod stripe;
pub mod webhooks;

pub use http_upstream::{HttpUpstream, UpstreamConfig};
pub use offline_search::OfflineSearch;
