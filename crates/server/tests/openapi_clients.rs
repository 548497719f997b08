//! Real clients of `/openapi.json` against the running server: openapi-spec-validator accepts the
//! document, openapi-python-client generates a client that lists products and creates a quote,
//! and schemathesis fuzzes every operation with an owner key and finds no 5xx and no answer that
//! violates the document. The server has its payment rails on (the Stripe stand-in), so no route
//! answers `503 not configured`.
//!
//! The tools come from `tests/clients/requirements.txt`; `.ci/run` installs them. Without them the
//! test is skipped with a message, unless `STOREFRONT_TEST_CLIENTS` is `required`.

mod common;

use common::payments;
use common::Backend;
use std::path::{Path, PathBuf};

/// The tool's executable beside the test's Python interpreter (a virtualenv's `bin`).
fn tool(name: &str) -> Option<PathBuf> {
    let python = std::env::var("STOREFRONT_TEST_PYTHON").ok()?;
    let path = Path::new(&python).parent()?.join(name);
    path.exists().then_some(path)
}

async fn run(command: &mut tokio::process::Command, what: &str) -> String {
    let out = command
        .kill_on_drop(true)
        .output()
        .await
        .expect("the tool runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

dual_test!(real_openapi_clients_accept_the_document_and_find_no_violations);
async fn real_openapi_clients_accept_the_document_and_find_no_violations(backend: Backend) {
    let tools = [
        "openapi-spec-validator",
        "openapi-python-client",
        "schemathesis",
    ];
    let Some(paths) = tools.iter().map(|t| tool(t)).collect::<Option<Vec<_>>>() else {
        assert!(
            std::env::var("STOREFRONT_TEST_CLIENTS").as_deref() != Ok("required"),
            "STOREFRONT_TEST_CLIENTS=required but {tools:?} are not installed beside STOREFRONT_TEST_PYTHON"
        );
        eprintln!("skipped: {tools:?} are not installed (tests/clients/requirements.txt)");
        return;
    };
    // schemathesis sends thousands of requests a minute: rate limits off, so every answer it
    // sees is the operation's own (limits have their own test, tests/limits.rs).
    // Webhook URLs it makes up are judged by their form only (private targets allowed), so that
    // no host name it invents is looked up in the DNS; no worker runs, so nothing is sent.
    let (s, _stripe) = payments::start_with(&backend, |c| {
        c.rate_limit_per_minute = 0;
        c.public_rate_limit_per_minute = 0;
        c.webhooks.allow_private_targets = true;
    })
    .await;
    let (_, key) = s.account(1_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("openapi.json");
    let text = s
        .client
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(&document, &text).unwrap();

    run(
        tokio::process::Command::new(&paths[0]).arg(&document),
        "openapi-spec-validator",
    )
    .await;

    let generated = dir.path().join("generated");
    run(
        tokio::process::Command::new(&paths[1])
            .args(["generate", "--meta", "none", "--path"])
            .arg(&document)
            .arg("--output-path")
            .arg(generated.join("storefront_client")),
        "openapi-python-client generate",
    )
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openapi_client.py");
    let report = run(
        tokio::process::Command::new(std::env::var("STOREFRONT_TEST_PYTHON").unwrap())
            .arg(script)
            .arg(&generated)
            .env("STOREFRONT_URL", &s.base)
            .env("STOREFRONT_API_KEY", &key),
        "the generated client",
    )
    .await;
    assert!(report.contains("\"quote_id\": \"qt_"), "{report}");

    // Every operation, fuzzed: no 5xx, every answer's status, content type, headers and body as
    // documented. (Requests the document calls valid but the server refuses for reasons a schema
    // cannot state — an unknown cursor, "quote_id or product_id" — are not counted as failures.)
    let fuzzed = run(
        tokio::process::Command::new(&paths[2])
            .arg("run")
            .arg(s.url("/openapi.json"))
            .args(["--url", &s.base])
            .args(["-H", &format!("Authorization: Bearer {key}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
                "--max-examples",
                "25",
                "--seed",
                "1",
                // The live event stream never ends by design; its own test reads it
                // (tests/webhooks.rs).
                "--exclude-operation-id",
                "stream_events",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(dir.path()),
        "schemathesis",
    )
    .await;
    // The document's links drive a stateful phase: create, then read and act on what was made.
    let stateful = fuzzed
        .lines()
        .skip_while(|l| !l.contains("Stateful"))
        .find_map(|l| l.trim().strip_prefix("Scenarios:"))
        .and_then(|n| n.trim().parse::<u32>().ok());
    assert!(
        stateful.is_some_and(|n| n > 0),
        "no stateful scenarios ran:\n{fuzzed}"
    );
}
