//! The server is killed (SIGKILL) with a provisioning job in flight and a machine running; after
//! a restart every job completes, the running machine is back with its files, and no machine
//! exists twice.

mod common;

use common::binary::{database, next_line_containing, start, terminate};
use common::machines::{image_dir, ssh};
use common::Backend;
use serde_json::{json, Value};
use std::time::Duration;

async fn get(base: &str, path: &str, key: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn order(base: &str, key: &str, idempotency_key: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency_key)
        .json(
            &json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 60}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls an order until its machine is handed over (a real system settling, bounded).
async fn wait_fulfilled(base: &str, key: &str, order_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let body = get(base, &format!("/api/v1/orders/{order_id}"), key).await;
        if body["data"]["order"]["credentials_available"] == true {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {order_id} never fulfilled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

dual_test!(jobs_finish_and_machines_come_back_after_a_crash);
async fn jobs_finish_and_machines_come_back_after_a_crash(backend: Backend) {
    let Some(images) = image_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = database(&backend, dir.path()).await;
    let db = db.as_deref();
    let images = images.display().to_string();
    let env_args = ["--role", "all"];
    let config = format!("image_dir = \"{images}\"\njob_lease_seconds = 2\n");
    std::fs::write(dir.path().join("storefront.toml"), config).unwrap();

    let mut server = start(dir.path(), db, &env_args).await;
    let line = next_line_containing(&mut server, "export STOREFRONT_API_KEY=").await;
    let key = line.split('=').nth(1).unwrap().trim().to_owned();
    let first = order(&server.base, &key, "first").await;
    let first_id = first["data"]["order"]["id"].as_str().unwrap().to_owned();
    wait_fulfilled(&server.base, &key, &first_id).await;
    let creds = get(
        &server.base,
        &format!("/api/v1/orders/{first_id}/credentials"),
        &key,
    )
    .await;
    let private_key = creds["data"]["credentials"]["private_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let port = creds["data"]["credentials"]["port"].as_u64().unwrap() as u16;
    ssh(&private_key, port, "echo survived > /root/note").await;

    // A second purchase, and the process dies while its provisioning job is in flight.
    let second = order(&server.base, &key, "second").await;
    let second_id = second["data"]["order"]["id"].as_str().unwrap().to_owned();
    server.child.kill().await.unwrap();

    let restarted = start(dir.path(), db, &env_args).await;
    let done = wait_fulfilled(&restarted.base, &key, &second_id).await;
    assert_eq!(done["data"]["order"]["status"], "fulfilled");
    // The first machine was started again by reconciliation, files intact.
    let first_service = first["data"]["order"]["service_id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let port = loop {
        let s = get(
            &restarted.base,
            &format!("/api/v1/services/{first_service}"),
            &key,
        )
        .await;
        let port = s["data"]["service"]["server"]["ssh_port"].as_u64().unwrap() as u16;
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break port;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first machine never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        ssh(&private_key, port, "cat /root/note").await.trim(),
        "survived"
    );
    let leases: Vec<_> = std::fs::read_dir(dir.path().join("data/leases"))
        .unwrap()
        .collect();
    assert_eq!(leases.len(), 2, "exactly one machine per order");
    let services = get(&restarted.base, "/api/v1/services", &key).await;
    assert_eq!(services["data"]["services"].as_array().unwrap().len(), 2);
    assert!(terminate(restarted).await.success());
}
