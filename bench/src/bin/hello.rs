//! The HTTP ceilings: the smallest axum server, built with the same release profile, runtime and
//! allocator as the storefront. `/` answers a small JSON body; `/bytes/{n}` answers a JSON body
//! of exactly `n` bytes (made once per size, then shared), the ceiling for an answer as large
//! as a storefront page. Prints its address like the storefront does.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bodies already made, by size.
type Bodies = Arc<Mutex<HashMap<usize, Bytes>>>;

const PREFIX: &str = r#"{"ok":true,"data":""#;
const SUFFIX: &str = r#""}"#;
const LARGEST: usize = 16 << 20;

async fn sized(State(bodies): State<Bodies>, Path(n): Path<usize>) -> impl IntoResponse {
    if !(PREFIX.len() + SUFFIX.len()..=LARGEST).contains(&n) {
        return Err(StatusCode::BAD_REQUEST);
    }
    let body = bodies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(n)
        .or_insert_with(|| {
            let padding = "x".repeat(n - PREFIX.len() - SUFFIX.len());
            Bytes::from(format!("{PREFIX}{padding}{SUFFIX}"))
        })
        .clone();
    Ok(([("content-type", "application/json")], body))
}

#[tokio::main]
async fn main() {
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"ok":true,"data":{"hello":"world"}}"#,
                )
            }),
        )
        .route("/bytes/{n}", get(sized))
        .with_state(Bodies::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!(
        "Storefront is serving on http://{}",
        listener.local_addr().expect("address")
    );
    axum::serve(listener, app).await.expect("serve");
}
