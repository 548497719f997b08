//! The MCP door with a real client: the Python `mcp` SDK connects over streamable HTTP (`/mcp` with
//! a bearer key) and over stdio (`storefront mcp`), lists the tools and performs the MCP store's
//! seven-step flow (docs/api.md, "MCP") on a real machine. Also a raw JSON-RPC exchange, which
//! needs no client.
//!
//! The client comes from `tests/clients/requirements.txt`; `.ci/run` installs it. Without it (or
//! without a machine image) the client tests are skipped with a message, unless
//! `STOREFRONT_TEST_CLIENTS` is `required`.

mod common;

use common::machines::image_dir;
use common::{Backend, TestServer};
use serde_json::{json, Value};

fn python_with_mcp() -> Option<String> {
    let python = std::env::var("STOREFRONT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    std::process::Command::new(&python)
        .args(["-c", "import mcp.client.streamable_http, mcp.client.stdio"])
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(python)
}

fn skip(why: &str) {
    assert!(
        std::env::var("STOREFRONT_TEST_CLIENTS").as_deref() != Ok("required"),
        "STOREFRONT_TEST_CLIENTS=required but {why}"
    );
    eprintln!("skipped: {why}");
}

async fn seven_steps(backend: Backend, transport: &str) {
    let Some(python) = python_with_mcp() else {
        return skip("the Python mcp SDK is not installed (tests/clients/requirements.txt)");
    };
    if image_dir().is_none() {
        return;
    }
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(10_000).await;
    // `storefront mcp` and a `storefront serve --role worker` share the server's database and
    // data directory, on the real clock, as they would in a deployment.
    let shared = |command: &mut tokio::process::Command| {
        command
            .env("STOREFRONT_DATA_DIR", &s.config.data_dir)
            .env(
                "STOREFRONT_DATABASE_URL",
                s.config.database_url.as_deref().unwrap_or_default(),
            )
            .env("STOREFRONT_BASE_URL", &s.base)
            .env("STOREFRONT_LOG", "warn");
        if let Some(dir) = &s.config.image_dir {
            command.env("STOREFRONT_IMAGE_DIR", dir);
        }
    };
    let _worker = if transport == "stdio" {
        let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_storefront"));
        worker
            .args(["serve", "--role", "worker"])
            .kill_on_drop(true);
        shared(&mut worker);
        Some(worker.spawn().expect("a worker process starts"))
    } else {
        s.start_worker();
        None
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/mcp_flow.py");
    let mut command = tokio::process::Command::new(python);
    command
        .arg(script)
        .env("TRANSPORT", transport)
        .env("STOREFRONT_URL", &s.base)
        .env("STOREFRONT_API_KEY", &key)
        .env("STOREFRONT_BIN", env!("CARGO_BIN_EXE_storefront"));
    shared(&mut command);
    let out = command.output().await.expect("the client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{transport}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report ({e}): {stdout}"));
    // The same error object as REST answers for the same request.
    let rest = s
        .post(
            "/api/v1/quotes",
            Some(&key),
            &json!({"product_id": "no-such-product", "configuration": {}}),
        )
        .await;
    assert_eq!(rest.status, 404, "{:?}", rest.body);
    assert_eq!(report["error"]["code"], "not_found");
    assert_eq!(report["error"], rest.body["error"]);
    for (tool, param) in [
        ("server_reinstall", "image"),
        ("catalog_search", "limit"),
        ("account_balance", "surprise"),
    ] {
        let error = &report["argument_errors"][tool];
        assert_eq!(error["code"], "validation_error", "{tool}: {error}");
        assert_eq!(error["type"], "invalid_request", "{tool}: {error}");
        assert_eq!(error["param"], param, "{tool}: {error}");
        assert!(error["suggestion"].as_str().is_some_and(|s| !s.is_empty()));
    }
    // The machine the client bought is the account's, and the client terminated it.
    let order_id = report["order_id"].as_str().unwrap();
    let order = s
        .get(&format!("/api/v1/orders/{order_id}"), Some(&key))
        .await;
    assert_eq!(order.status, 200, "{:?}", order.body);
    assert_eq!(order.body["data"]["order"]["payment_method"], "credit");
    let service_id = report["service_id"].as_str().unwrap();
    let gone = s
        .poll_until(&format!("/api/v1/services/{service_id}"), Some(&key), |b| {
            b["data"]["service"]["status"] == "terminated"
        })
        .await;
    assert_eq!(gone["data"]["service"]["status"], "terminated");
}

dual_test!(the_python_mcp_sdk_buys_and_manages_a_machine_over_streamable_http);
async fn the_python_mcp_sdk_buys_and_manages_a_machine_over_streamable_http(backend: Backend) {
    seven_steps(backend, "http").await;
}

dual_test!(the_python_mcp_sdk_buys_and_manages_a_machine_over_stdio);
async fn the_python_mcp_sdk_buys_and_manages_a_machine_over_stdio(backend: Backend) {
    seven_steps(backend, "stdio").await;
}

/// A raw JSON-RPC call to `/mcp` (JSON response mode); returns the `result` or `error`.
async fn rpc(
    s: &TestServer,
    key: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> (Value, Option<String>) {
    let mut req = s
        .client
        .post(s.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(id) = session {
        req = req
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let resp = req.send().await.expect("reaches /mcp");
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    // A JSON body, or an event stream whose last data line is the answer.
    let answer = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .rev()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|d| serde_json::from_str(d.trim()).ok())
            .unwrap_or(Value::Null)
    });
    (answer, session)
}

dual_test!(tools_answer_domain_errors_as_tool_results_and_respect_the_key);
async fn tools_answer_domain_errors_as_tool_results_and_respect_the_key(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(700).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}});
    let (answer, session) = rpc(&s, Some(&key), None, init).await;
    assert_eq!(
        answer["result"]["serverInfo"]["name"], "storefront",
        "{answer}"
    );
    let session = session.as_deref();
    rpc(
        &s,
        Some(&key),
        session,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;

    let call = |name: &str, args: Value| json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": args}});
    let (balance, _) = rpc(&s, Some(&key), session, call("account_balance", json!({}))).await;
    assert_eq!(
        balance["result"]["structuredContent"]["balance_minor"], 700,
        "{balance}"
    );

    let (missing, _) = rpc(
        &s,
        Some(&key),
        session,
        call("order_get", json!({"orderId": "ord_nope"})),
    )
    .await;
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    assert_eq!(
        missing["result"]["structuredContent"]["error"]["code"],
        "not_found"
    );
    assert!(missing["result"]["structuredContent"]["error"]["suggestion"].is_string());

    // The same session with another key (or none) acts as that caller: keys are checked per call.
    let (public, _) = rpc(&s, None, session, call("account_balance", json!({}))).await;
    assert_eq!(
        public["result"]["structuredContent"]["error"]["code"], "unauthorized",
        "{public}"
    );
    let (revoked, _) = rpc(
        &s,
        Some("sf_live_not_a_key"),
        session,
        call("account_balance", json!({})),
    )
    .await;
    assert_eq!(revoked["result"]["isError"], true);
}

dual_test!(mcp_refuses_hosts_outside_its_allow_list);
async fn mcp_refuses_hosts_outside_its_allow_list(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}});
    let post = |host: &'static str| {
        s.client
            .post(s.url("/mcp"))
            .header("host", host)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
    };
    let rebound = post("attacker.example").send().await.unwrap();
    assert!(
        rebound.status().is_client_error(),
        "a foreign Host is refused: {}",
        rebound.status()
    );
    let local = post("localhost").send().await.unwrap();
    assert!(local.status().is_success(), "{}", local.status());
}

dual_test!(ending_an_mcp_session_answers_no_content);
async fn ending_an_mcp_session_answers_no_content(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}});
    let opened = s
        .client
        .post(s.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert!(opened.status().is_success(), "{}", opened.status());
    let session = opened
        .headers()
        .get("mcp-session-id")
        .expect("a session id")
        .to_str()
        .unwrap()
        .to_owned();
    // Clients (the Python SDK among them) take 200 or 204 as a terminated session.
    let ended = s
        .client
        .delete(s.url("/mcp"))
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    // The session is gone.
    let after = s
        .client
        .post(s.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert!(after.status().is_client_error(), "{}", after.status());
}
