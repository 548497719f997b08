//! Real MPP clients against the running storefront: pympp (Python) and mppx (TypeScript) each
//! buy — a machine when local machines can run here, else a web search — by answering the 402
//! challenge with a Stripe shared payment token the stand-in accepts, then replay the credential
//! (refused) and pay with a token the stand-in declines (rejected, nothing charged).
//!
//! The clients come from `tests/clients` (`requirements.txt`, `package.json`); `.ci/run` installs
//! them. Without them the tests are skipped with a message, unless `STOREFRONT_TEST_CLIENTS` is
//! `required`.

mod common;

use common::machines::image_dir;
use common::payments::{self, MPP_SECRET};
use common::Backend;
use serde_json::{json, Value};
use std::path::PathBuf;

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn required() -> bool {
    std::env::var("STOREFRONT_TEST_CLIENTS").as_deref() == Ok("required")
}

fn skip(why: &str) {
    assert!(!required(), "STOREFRONT_TEST_CLIENTS=required but {why}");
    eprintln!("skipped: {why} (see tests/clients; .ci/run installs the clients)");
}

/// The interpreter and script of a client, if it is installed.
fn client(name: &str) -> Option<(String, PathBuf)> {
    let dir = clients_dir();
    match name {
        "pympp" => {
            let python =
                std::env::var("STOREFRONT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
            let importable = std::process::Command::new(&python)
                .args(["-c", "import mpp.client, mpp.methods.stripe.client"])
                .output()
                .is_ok_and(|o| o.status.success());
            importable.then(|| (python, dir.join("mpp_pympp.py")))
        }
        _ => dir
            .join("node_modules/mppx/package.json")
            .exists()
            .then(|| ("node".to_owned(), dir.join("mpp_mppx.mjs"))),
    }
}

async fn buys_with(name: &str, backend: Backend) {
    let Some((interpreter, script)) = client(name) else {
        return skip(&format!("the {name} client is not installed"));
    };
    let (s, stripe) = payments::start(&backend).await;
    s.start_worker();
    let machines = image_dir().is_some();
    let (product, configuration) = if machines {
        ("bare-linux-machine", json!({"duration_minutes": 15}))
    } else {
        (
            "web-search",
            json!({"query": "linux machine", "max_results": 2}),
        )
    };
    let out = tokio::process::Command::new(&interpreter)
        .arg(&script)
        .env("STOREFRONT_URL", &s.base)
        .env("MPP_SECRET", MPP_SECRET)
        .env("PRODUCT", product)
        .env("CONFIGURATION", configuration.to_string())
        .output()
        .await
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{name} printed no report ({e}): {stdout}"));

    // One successful PaymentIntent, the one the receipt names; declines charged nothing.
    let intents = stripe.payment_intents();
    let succeeded: Vec<&Value> = intents
        .iter()
        .filter(|pi| pi["status"] == "succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "{intents:?}");
    assert_eq!(succeeded[0]["id"], report["receipt_reference"]);
    assert_eq!(report["replay_code"], "invalid-challenge");
    assert_eq!(report["declined_code"], "verification-failed");

    // The order the client bought is paid, once, and delivered.
    let status_url = report["status_url"]
        .as_str()
        .expect("the order's status_url");
    let done = s
        .poll_until(status_url, None, |b| {
            b["data"]["order"]["status"] == "fulfilled"
        })
        .await;
    let order = &done["data"]["order"];
    assert_eq!(order["id"], report["order_id"]);
    assert_eq!(order["payment_status"], "paid");
    assert_eq!(order["payment_method"], "mpp");
    assert_eq!(order["total_minor"], succeeded[0]["amount"]);
    if machines {
        assert_eq!(
            order["credentials_available"], true,
            "the machine is active"
        );
    }
}

dual_test!(pympp_buys_with_a_stripe_token_and_is_refused_replays_and_declines);
async fn pympp_buys_with_a_stripe_token_and_is_refused_replays_and_declines(backend: Backend) {
    buys_with("pympp", backend).await;
}

dual_test!(mppx_buys_with_a_stripe_token_and_is_refused_replays_and_declines);
async fn mppx_buys_with_a_stripe_token_and_is_refused_replays_and_declines(backend: Backend) {
    buys_with("mppx", backend).await;
}
