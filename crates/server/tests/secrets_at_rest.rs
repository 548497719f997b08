//! No secret in the logs or in the database in plaintext: the real binary runs with debug logs
//! while every kind of bearer secret is made and used — owner and agent keys, a dashboard login
//! code and session, a device code and the token it yields, signed URLs, resource tokens and a
//! machine's private key (when machines run here) — then its log output and the raw bytes of its
//! SQLite files (database, WAL) are searched for each of them.

mod common;

use common::binary::{admin, admin_account, get_json, poll_order, storefront, GUARD};
use common::machines::image_dir;
use serde_json::{json, Value};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The `sig` of a signed URL.
fn signature_of(url: &str) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .expect("a signed URL")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_appear_in_no_log_and_no_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let (account, owner) = admin_account(dir.path(), None, "leak@example.com", 10_000).await;
    let (_, code_out, _) = admin(
        dir.path(),
        None,
        &["login-code", "--account", &account, "--json"],
    )
    .await;
    let login_code: Value = serde_json::from_str(&code_out).unwrap();
    let login_code = login_code["login_code"].as_str().unwrap().to_owned();

    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = storefront(dir.path(), None);
    cmd.env("STOREFRONT_LOG", "debug")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(log.try_clone().unwrap());
    if let Some(images) = image_dir() {
        cmd.env("STOREFRONT_IMAGE_DIR", images);
    }
    let mut child = cmd.spawn().unwrap();
    // Every stdout line goes to the log file too; the address is read off the way.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let copy = tokio::spawn(async move {
        use std::io::Write;
        let mut log = log;
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            writeln!(log, "{line}").unwrap();
            if let Some(url) = line.strip_prefix("Storefront is serving on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        }
    });
    let base = tokio::time::timeout(GUARD, rx).await.unwrap().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut secrets: Vec<(String, String)> = vec![
        ("owner key".into(), owner.clone()),
        ("login code".into(), login_code.clone()),
    ];
    let post = |path: &str, key: Option<&str>, body: Value| {
        let mut req = http
            .post(format!("{base}{path}"))
            .header("Idempotency-Key", common::uuid_like())
            .json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };

    // Keys.
    let (_, agent) = post("/api/v1/agents", Some(&owner), json!({"name": "leaky"})).await;
    let agent_id = agent["data"]["agent"]["id"].as_str().unwrap().to_owned();
    let (_, key) = post(
        &format!("/api/v1/agents/{agent_id}/keys"),
        Some(&owner),
        json!({}),
    )
    .await;
    let agent_key = key["data"]["api_key"].as_str().unwrap().to_owned();
    secrets.push(("agent key".into(), agent_key.clone()));
    let (_, spare) = post(
        "/api/v1/account/api-keys",
        Some(&owner),
        json!({"role": "owner"}),
    )
    .await;
    secrets.push((
        "second owner key".into(),
        spare["data"]["api_key"].as_str().unwrap().to_owned(),
    ));

    // A dashboard session from the login code.
    let signed_in = http
        .post(format!("{base}/dashboard/login"))
        .form(&[("credential", login_code.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let session = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    assert!(session.starts_with("sf_sess_"));
    secrets.push(("dashboard session".into(), session.clone()));
    let page = http
        .get(format!("{base}/dashboard"))
        .header("cookie", format!("sf_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    // The device flow: the device code and the token it yields.
    let (_, device) = post(
        "/api/v1/agent-auth/device",
        None,
        json!({"customer_email": "leak@example.com", "agent_name": "customer-agent"}),
    )
    .await;
    let device_code = device["data"]["device_code"].as_str().unwrap().to_owned();
    let user_code = device["data"]["user_code"].as_str().unwrap().to_owned();
    secrets.push(("device code".into(), device_code.clone()));
    let (status, _) = post(
        "/api/v1/agent-auth/decide",
        Some(&owner),
        json!({"user_code": user_code, "decision": "approve"}),
    )
    .await;
    assert!(status.is_success());
    let (_, token) = post(
        "/api/v1/agent-auth/token",
        None,
        json!({"device_code": device_code}),
    )
    .await;
    secrets.push((
        "device token".into(),
        token["data"]["access_token"].as_str().unwrap().to_owned(),
    ));

    // A purchase and its signed status URL, used.
    let (status, order) = post(
        "/api/v1/orders",
        Some(&agent_key),
        json!({"product_id": "web-search", "configuration": {"query": "secrets"}, "payment_method": "credit"}),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let status_url = order["data"]["order"]["status_url"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push(("status URL signature".into(), signature_of(&status_url)));
    assert!(http
        .get(&status_url)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());

    // A machine: resource tokens, a signed credentials URL and the private key.
    if image_dir().is_some() {
        let (status, order) = post(
            "/api/v1/orders",
            Some(&owner),
            json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 15}, "payment_method": "credit"}),
        )
        .await;
        assert_eq!(status, 202, "{order}");
        let order = &order["data"]["order"];
        for scope in ["read", "extend", "terminate"] {
            let token = order["management_tokens"][format!("{scope}_token")]
                .as_str()
                .unwrap();
            secrets.push((format!("{scope} token"), token.to_owned()));
        }
        let id = order["id"].as_str().unwrap();
        let ready = poll_order(&http, &base, &owner, id, |o| {
            o["credentials_available"] == true
        })
        .await;
        let credentials_url = ready["credentials_action"]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let creds = get_json(&http, &credentials_url, None).await;
        let private_key = creds["data"]["credentials"]["private_key"]
            .as_str()
            .unwrap();
        // A line from the middle of the key: its body, not the armour.
        let body_line = private_key.lines().nth(2).unwrap().to_owned();
        secrets.push(("private key".into(), body_line));
        secrets.push((
            "credentials URL signature".into(),
            signature_of(&credentials_url),
        ));
    }

    // Stop the server so every log line and page is on disk.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    tokio::time::timeout(GUARD, child.wait())
        .await
        .unwrap()
        .unwrap();
    copy.await.unwrap();

    let logs = std::fs::read(&log_path).unwrap();
    assert!(logs.len() > 1_000, "the server logged at debug level");
    let data = dir.path().join("data");
    let mut files = vec![("server log".to_owned(), logs)];
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    assert!(files
        .iter()
        .any(|(name, _)| name.ends_with("storefront.db")));
    for (what, secret) in &secrets {
        assert!(secret.len() >= 20, "{what} is a real secret");
        for (file, bytes) in &files {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "the {what} appears in plaintext in {file}");
        }
    }
}
