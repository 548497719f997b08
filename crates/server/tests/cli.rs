//! The `storefront` binary itself: first start on the embedded default, the admin commands'
//! `--json` outputs and exit codes, and graceful shutdown with a request in flight.

mod common;

use common::binary::{admin, database, next_line_containing, start, storefront, terminate, GUARD};
use common::Backend;
use serde_json::{json, Value};
use std::sync::Arc;

dual_test!(first_start_creates_the_database_and_a_demo_account_that_can_buy);
async fn first_start_creates_the_database_and_a_demo_account_that_can_buy(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&backend, dir.path()).await;
    let db = db.as_deref();
    let mut server = start(dir.path(), db, &[]).await;
    let line = next_line_containing(&mut server, "export STOREFRONT_API_KEY=").await;
    let key = line.split('=').nth(1).unwrap().trim().to_owned();
    assert!(
        db.is_some() || dir.path().join("data/storefront.db").exists(),
        "SQLite file in ./data"
    );
    let curl = next_line_containing(&mut server, "curl -s").await;
    assert!(curl.contains(&format!("{}/api/v1/orders", server.base)));

    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/v1/orders", server.base))
        .bearer_auth(&key)
        .header("Idempotency-Key", "first-purchase-1")
        .json(&json!({"product_id": "web-search", "configuration": {"query": "linux machine"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["order"]["status"], "fulfilled");
    // An open event stream never ends by itself; shutdown ends it instead of waiting for it.
    let mut stream = client
        .get(format!("{}/api/v1/events/stream", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(terminate(server).await.success(), "SIGTERM is a clean exit");
    while let Ok(Some(_)) = stream.chunk().await {}

    let mut again = start(dir.path(), db, &[]).await;
    let r = client
        .get(format!("{}/api/v1/account", again.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the demo key survives a restart");
    let pid = again.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let mut rest = String::new();
    while let Ok(Some(l)) = again.lines.next_line().await {
        rest.push_str(&l);
    }
    assert!(
        !rest.contains("STOREFRONT_API_KEY"),
        "the demo account is made only on the first start"
    );
    assert!(again.child.wait().await.unwrap().success());
}

dual_test!(admin_commands_print_the_documented_json_and_fail_loudly);
async fn admin_commands_print_the_documented_json_and_fail_loudly(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&backend, dir.path()).await;
    let db = db.as_deref();
    let d = dir.path();
    let (ok, out, _) = storefront(d, db)
        .arg("migrate")
        .output()
        .await
        .map(|o| (o.status.success(), String::from_utf8(o.stdout).unwrap(), ()))
        .unwrap();
    assert!(ok, "{out}");

    let (ok, out, err) = admin(
        d,
        db,
        &[
            "create-account",
            "--email",
            "ops@example.com",
            "--name",
            "Ops",
            "--json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).expect("exactly one JSON object");
    let account = created["account_id"].as_str().unwrap().to_owned();
    assert!(account.starts_with("acct_"));
    assert!(created["api_key"].as_str().unwrap().starts_with("sf_live_"));
    assert_eq!(created.as_object().unwrap().len(), 2);

    let (ok, out, _) = admin(
        d,
        db,
        &[
            "grant-credits",
            "--account",
            &account,
            "--amount-minor",
            "1500",
            "--reason",
            "welcome",
            "--json",
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap(),
        json!({"balance_minor": 1500, "currency": "usd"})
    );
    let (ok, out, _) = admin(
        d,
        db,
        &[
            "grant-credits",
            "--account",
            &account,
            "--amount-minor",
            "-500",
            "--reason",
            "correction",
            "--json",
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["balance_minor"],
        1000
    );

    let (ok, out, _) = admin(
        d,
        db,
        &[
            "create-key",
            "--account",
            &account,
            "--role",
            "owner",
            "--json",
        ],
    )
    .await;
    assert!(ok);
    let key: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(key["key_id"].as_str().unwrap().starts_with("key_"));
    // An agent key belongs to an agent: without one, or with one that does not exist, refused.
    let (ok, _, err) = admin(
        d,
        db,
        &["create-key", "--account", &account, "--role", "agent"],
    )
    .await;
    assert!(!ok && err.contains("--agent"), "{err}");
    let (ok, _, err) = admin(
        d,
        db,
        &[
            "create-key",
            "--account",
            &account,
            "--role",
            "agent",
            "--agent",
            "agt_01a238c5e61071c9bd6cc7ec8100f332",
        ],
    )
    .await;
    assert!(
        !ok && err.contains("agt_01a238c5e61071c9bd6cc7ec8100f332"),
        "{err}"
    );

    let (ok, out, _) = admin(d, db, &["list-accounts", "--json"]).await;
    assert!(ok);
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list[0]["account_id"], account.as_str());
    assert_eq!(list[0]["balance_minor"], 1000);

    for args in [
        vec![
            "grant-credits",
            "--account",
            "acct_nope",
            "--amount-minor",
            "5",
            "--reason",
            "x",
            "--json",
        ],
        vec![
            "grant-credits",
            "--account",
            account.as_str(),
            "--amount-minor",
            "-999999",
            "--reason",
            "x",
        ],
        vec!["create-account", "--email", "not-an-email", "--name", "x"],
        vec![
            "create-account",
            "--email",
            "ops@example.com",
            "--name",
            "again",
        ],
    ] {
        let (ok, out, err) = admin(d, db, &args).await;
        assert!(!ok, "{args:?} must fail");
        assert!(out.is_empty(), "nothing on stdout for {args:?}");
        assert!(err.starts_with("error: "), "{err}");
    }
}

dual_test!(sigterm_lets_an_in_flight_request_finish);
async fn sigterm_lets_an_in_flight_request_finish(backend: Backend) {
    // An upstream that holds the request until the test releases it.
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (a, r) = (arrived.clone(), release.clone());
    let upstream = axum::Router::new().route(
        "/search",
        axum::routing::get(move || {
            let (a, r) = (a.clone(), r.clone());
            async move {
                a.notify_one();
                r.notified().await;
                axum::Json(json!({"results": [{"title": "late but complete"}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}/search", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, upstream).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let db = database(&backend, dir.path()).await;
    let db = db.as_deref();
    std::fs::write(
        dir.path().join("catalog.toml"),
        r#"
[[products]]
id = "slow-search"
sku = "slow-search"
name = "Slow search"
category = "search"
description = "Held by the test."
kind = "instant"
fulfiller = "slow"
[products.pricing]
model = "per_use"
unit_minor = 1
currency = "usd"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("storefront.toml"),
        format!("catalog_file = \"catalog.toml\"\n[[upstreams]]\nname = \"slow\"\nurl = \"{upstream_url}\"\ntimeout_ms = 60000\nresults_pointer = \"/results\"\n"),
    )
    .unwrap();
    let mut server = start(dir.path(), db, &[]).await;
    let line = next_line_containing(&mut server, "export STOREFRONT_API_KEY=").await;
    let key = line.split('=').nth(1).unwrap().trim().to_owned();
    let base = server.base.clone();
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(key)
            .header("Idempotency-Key", "slow-1")
            .json(&json!({"product_id": "slow-search"}))
            .send()
            .await
            .unwrap()
    });
    tokio::time::timeout(GUARD, arrived.notified())
        .await
        .expect("request reached the upstream");
    let pid = server.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    // The process must still be finishing the request: it cannot have exited yet.
    assert!(server.child.try_wait().unwrap().is_none());
    release.notify_one();
    let response = tokio::time::timeout(GUARD, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 201, "the in-flight order completed");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["data"]["order"]["result"]["results"][0]["title"],
        "late but complete"
    );
    let status = tokio::time::timeout(GUARD, server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

dual_test!(a_rotated_signing_key_keeps_issued_urls_valid);
async fn a_rotated_signing_key_keeps_issued_urls_valid(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&backend, dir.path()).await;
    let db = db.as_deref();
    let mut server = start(dir.path(), db, &[]).await;
    let line = next_line_containing(&mut server, "export STOREFRONT_API_KEY=").await;
    let key = line.split('=').nth(1).unwrap().trim().to_owned();
    let client = reqwest::Client::new();
    let order: Value = client
        .post(format!("{}/api/v1/orders", server.base))
        .bearer_auth(&key)
        .header("Idempotency-Key", "before-rotation")
        .json(&json!({"product_id": "web-search", "configuration": {"query": "rotation"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old_url = order["data"]["order"]["status_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = order["data"]["order"]["id"].as_str().unwrap().to_owned();
    assert!(terminate(server).await.success());

    let (ok, out, err) = admin(dir.path(), db, &["rotate-signing-key"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("rotated"));

    let again = start(dir.path(), db, &[]).await;
    let old_url = old_url.replace(old_url.split("/api/").next().unwrap(), &again.base);
    let r = client.get(&old_url).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "a URL signed with the retired key still works"
    );
    let fresh: Value = client
        .get(format!("{}/api/v1/orders/{id}", again.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_url = fresh["data"]["order"]["status_url"].as_str().unwrap();
    assert_ne!(
        new_url.split("sig=").nth(1),
        old_url.split("sig=").nth(1),
        "new URLs carry the new key's signature"
    );
    assert!(terminate(again).await.success());
}

#[tokio::test]
async fn the_login_code_names_the_configured_dashboard_and_every_admin_option_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let (account, _) =
        common::binary::admin_account(dir.path(), None, "login@example.com", 1).await;
    for (setting, value, url) in [
        (
            "STOREFRONT_LISTEN",
            "127.0.0.1:9317",
            "http://127.0.0.1:9317/dashboard/login",
        ),
        (
            "STOREFRONT_BASE_URL",
            "https://shop.example.com/",
            "https://shop.example.com/dashboard/login",
        ),
    ] {
        let out = storefront(dir.path(), None)
            .env(setting, value)
            .args(["admin", "login-code", "--account", &account, "--json"])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(issued["login_url"], url, "{setting}");
        let text = storefront(dir.path(), None)
            .env(setting, value)
            .args(["admin", "login-code", "--account", &account])
            .output()
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&text.stdout).contains(url));
    }
    for command in [
        "create-account",
        "grant-credits",
        "create-key",
        "login-code",
        "list-accounts",
    ] {
        let out = storefront(dir.path(), None)
            .args(["admin", command, "--help"])
            .output()
            .await
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        // clap prints an option with help as `--name <VALUE>  Help text`; one without help has
        // nothing after its value name.
        for line in help.lines().filter(|l| l.trim_start().starts_with("--")) {
            let described = line.trim().split("  ").filter(|p| !p.is_empty()).count() > 1;
            assert!(
                described,
                "`admin {command}`: an option without help: {line}"
            );
        }
    }
}

#[tokio::test]
async fn a_catalog_file_can_start_from_the_builtin_one_and_is_checked_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &'static [&'static str]| {
        let mut command = storefront(dir.path(), None);
        command.args(args);
        command
    };
    let printed = run(&["catalog", "print-default"]).output().await.unwrap();
    assert!(printed.status.success());
    let builtin = String::from_utf8(printed.stdout).unwrap();
    assert!(builtin.contains("[[products]]") && builtin.contains("id = \"web-search\""));

    // The built-in products, one replaced and one added.
    let own = builtin
        .split("[[products]]")
        .find(|p| p.contains("id = \"web-search\""))
        .unwrap()
        .to_owned();
    let file = dir.path().join("catalog.toml");
    std::fs::write(
        &file,
        format!(
            "include_builtin = true\n\n[[products]]{}\n[[products]]{}",
            own.replace("id = \"web-search\"", "id = \"my-search\""),
            own.replacen("name = \"", "name = \"Our ", 1)
        ),
    )
    .unwrap();
    let checked = storefront(dir.path(), None)
        .args(["catalog", "check", "catalog.toml", "--json"])
        .output()
        .await
        .unwrap();
    assert!(checked.status.success(), "{checked:?}");
    let report: Value = serde_json::from_slice(&checked.stdout).unwrap();
    let ids: Vec<&str> = report["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let builtin_count = builtin.matches("[[products]]").count();
    assert_eq!(ids.len(), builtin_count + 1, "{ids:?}");
    assert!(ids.contains(&"web-search") && ids.contains(&"bare-linux-machine"));
    assert_eq!(ids.last(), Some(&"my-search"));

    std::fs::write(&file, "[[products]]\nid = \"Not An Id\"\n").unwrap();
    let refused = storefront(dir.path(), None)
        .args(["catalog", "check", "catalog.toml"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("catalog.toml"), "the file is named: {why}");
}
