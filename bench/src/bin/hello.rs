//! The HTTP ceiling: the smallest axum server answering a small JSON body, built with the same
//! release profile, runtime and allocator as the storefront. Prints its address like the
//! storefront does.

use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() {
    let app = Router::new().route(
        "/",
        get(|| async {
            (
                [("content-type", "application/json")],
                r#"{"ok":true,"data":{"hello":"world"}}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!(
        "Storefront is serving on http://{}",
        listener.local_addr().expect("address")
    );
    axum::serve(listener, app).await.expect("serve");
}
