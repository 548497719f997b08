//! Buying a machine end to end: credits → provisioning job → a real lease → SSH with the handed-off
//! credentials → restart, reinstall, terminate, and expiry on the injected clock.

mod common;

use common::machines::{image_dir, ssh, ssh_pinned};
use common::{Backend, TestServer};
use serde_json::{json, Value};

fn status_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |b| b["data"]["service"]["status"] == status
}

dual_test!(a_bought_machine_can_be_used_restarted_reinstalled_and_terminated);
async fn a_bought_machine_can_be_used_restarted_reinstalled_and_terminated(backend: Backend) {
    if image_dir().is_none() {
        return;
    }
    let s = TestServer::start(&backend).await;
    s.start_worker();
    // `/readyz` says how machines are confined here.
    let ready = s.get("/readyz", None).await;
    let isolation = &ready.body["provisioners"]["local"]["isolation"];
    assert_eq!(isolation["network"]["enforced"], true, "{}", ready.body);
    assert_eq!(isolation["disk"]["enforced"], false, "{}", ready.body);
    let (_, key) = s.account(10_000).await;
    let r = s
        .order(
            Some(&key),
            "machine-1",
            &json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 30}}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let order = &r.body["data"]["order"];
    let order_id = order["id"].as_str().unwrap().to_owned();
    let service_id = order["service_id"]
        .as_str()
        .expect("the order names its service")
        .to_owned();
    let creds_url = order["credentials_action"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.balance(&key).await, 10_000 - 99 - 30 * 5);

    let early = s
        .get(
            &format!("/api/v1/services/{service_id}/credentials"),
            Some(&key),
        )
        .await;
    if early.status == 409 {
        assert_eq!(early.code(), "not_ready", "fulfilled is not ready");
        assert!(early.header("retry-after").is_some());
    }
    let done = s
        .poll_until(&format!("/api/v1/orders/{order_id}"), Some(&key), |b| {
            b["data"]["order"]["credentials_available"] == true
        })
        .await;
    assert_eq!(done["data"]["order"]["status"], "fulfilled");
    // An agent that kept only the signed status_url reaches the credentials from it too (but
    // gets no management tokens there).
    let by_status = s
        .get(order["status_url"].as_str().unwrap(), None)
        .await
        .body;
    assert_eq!(by_status["data"]["order"]["credentials_available"], true);
    assert_eq!(
        by_status["data"]["order"]["credentials_action"]["url"],
        creds_url.as_str()
    );
    assert!(by_status["data"]["order"]["management_tokens"].is_null());

    // The signed URL works without a key; the key works without the signature.
    let signed = s.get(&creds_url, None).await;
    assert_eq!(signed.status, 200, "{:?}", signed.body);
    let c = &signed.body["data"]["credentials"];
    let private_key = c["private_key"]
        .as_str()
        .expect("a generated key is handed over")
        .to_owned();
    let port = c["port"].as_u64().unwrap() as u16;
    assert_eq!(c["username"], "root");
    // The host key is handed over whole, with a ready known_hosts line that pins it.
    let host_key = c["host_public_key"].as_str().unwrap().to_owned();
    assert!(host_key.starts_with("ssh-ed25519 "), "{host_key}");
    let known_host = c["known_hosts_line"].as_str().unwrap().to_owned();
    assert_eq!(known_host, format!("[127.0.0.1]:{port} {host_key}"));
    assert_eq!(
        ssh_pinned(&private_key, &known_host, "echo pinned")
            .await
            .trim(),
        "pinned"
    );
    let by_key = s
        .get(
            &format!("/api/v1/services/{service_id}/credentials"),
            Some(&key),
        )
        .await;
    assert_eq!(
        by_key.body["data"]["credentials"]["private_key"],
        private_key.as_str()
    );
    let tampered = s.get(&creds_url.replace("sig=", "sig=x"), None).await;
    assert_eq!(tampered.code(), "invalid_signature");
    let (_, other) = s.account(0).await;
    assert_eq!(
        s.get(&format!("/api/v1/services/{service_id}"), Some(&other))
            .await
            .status,
        404
    );

    let service = s
        .get(&format!("/api/v1/services/{service_id}"), Some(&key))
        .await;
    let server = &service.body["data"]["service"]["server"];
    assert_eq!(server["power_state"], "running");
    let first_fingerprint = server["host_key_fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(server["host_public_key"], host_key.as_str());
    assert_eq!(server["known_hosts_line"], known_host.as_str());
    assert!(service.body["data"]["service"]["expires_at"].is_string());

    let out = ssh(
        &private_key,
        port,
        "hostname; echo hello > /root/file; (sleep 999 </dev/null >/dev/null 2>&1 &); echo ok",
    )
    .await;
    assert!(out.ends_with("ok\n"), "{out}");

    let restart = s
        .post(
            &format!("/api/v1/services/{service_id}/restart"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(restart.status, 202, "{:?}", restart.body);
    assert_eq!(restart.body["data"]["status"], "accepted");
    assert_eq!(
        restart.body["data"]["service"]["server"]["power_state"],
        "restarting"
    );
    let busy = s
        .post(
            &format!("/api/v1/services/{service_id}/restart"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!((busy.status.as_u16(), busy.code()), (400, "invalid_state"));
    let after = s
        .poll_until(
            &format!("/api/v1/services/{service_id}"),
            Some(&key),
            status_is("active"),
        )
        .await;
    let port = after["data"]["service"]["server"]["ssh_port"]
        .as_u64()
        .unwrap() as u16;
    let out = ssh(&private_key, port, "cat /root/file; pgrep -c sleep || true").await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["hello", "0"],
        "files kept, processes gone"
    );

    let bad = s
        .post(
            &format!("/api/v1/services/{service_id}/reinstall"),
            Some(&key),
            &json!({"image": "windows-95"}),
        )
        .await;
    assert_eq!((bad.status.as_u16(), bad.param()), (400, "image"));
    // Without `image`, the machine is reinstalled with the image it runs.
    let reinstall = s
        .post(
            &format!("/api/v1/services/{service_id}/reinstall"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(reinstall.status, 202, "{:?}", reinstall.body);
    let after = s
        .poll_until(
            &format!("/api/v1/services/{service_id}"),
            Some(&key),
            status_is("active"),
        )
        .await;
    let server = &after["data"]["service"]["server"];
    assert_ne!(
        server["host_key_fingerprint"].as_str().unwrap(),
        first_fingerprint,
        "a new host key"
    );
    let new_host_key = server["host_public_key"].as_str().unwrap().to_owned();
    assert_ne!(new_host_key, host_key, "the new host key is announced");
    let port = server["ssh_port"].as_u64().unwrap() as u16;
    let out = ssh_pinned(
        &private_key,
        server["known_hosts_line"].as_str().unwrap(),
        "test -e /root/file && echo present || echo gone",
    )
    .await;
    assert_eq!(out.trim(), "gone", "reinstall wipes the machine");

    s.terminate_service_done(&key, &service_id).await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "connection refused"
    );
    let again = s
        .post(
            &format!("/api/v1/services/{service_id}/terminate"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (400, "invalid_state")
    );
    let gone = s
        .get(
            &format!("/api/v1/services/{service_id}/credentials"),
            Some(&key),
        )
        .await;
    assert_eq!(
        (gone.status.as_u16(), gone.code()),
        (400, "invalid_state"),
        "polling cannot help: {:?}",
        gone.body
    );
    assert!(gone.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("credentials are gone"));
    assert!(gone.headers.get("retry-after").is_none());
    // Each step of the machine's life is in the event log, in order.
    let log = s
        .get(
            "/api/v1/events?type=service.active,service.restarted,service.reinstalled,service.terminated,order.fulfilled",
            Some(&key),
        )
        .await;
    let kinds: Vec<&str> = log.body["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "order.fulfilled",
            "service.active",
            "service.restarted",
            "service.reinstalled",
            "service.terminated"
        ]
    );
    let reinstalled = &log.body["data"]["events"][3]["data"]["server"];
    assert_eq!(
        reinstalled["host_public_key"],
        new_host_key.as_str(),
        "the reinstalled event carries the new host key"
    );
    let terminated = &log.body["data"]["events"][4]["data"];
    assert_eq!(terminated["id"], service_id.as_str());
    assert_eq!(terminated["status"], "terminated");
}

dual_test!(a_lease_is_terminated_when_its_time_runs_out);
async fn a_lease_is_terminated_when_its_time_runs_out(backend: Backend) {
    if image_dir().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("id");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&keyfile)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(dir.path().join("id.pub")).unwrap();
    let private = std::fs::read_to_string(&keyfile).unwrap();

    let s = TestServer::start(&backend).await;
    s.start_worker();
    let (_, key) = s.account(10_000).await;
    let body = json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 15, "ssh_public_key": public.trim()}});
    let r = s.order(Some(&key), "short-lease", &body).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let service_id = r.body["data"]["order"]["service_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let active = s
        .poll_until(
            &format!("/api/v1/services/{service_id}"),
            Some(&key),
            status_is("active"),
        )
        .await;
    let port = active["data"]["service"]["server"]["ssh_port"]
        .as_u64()
        .unwrap() as u16;
    assert_eq!(
        ssh(&private, port, "echo mine").await.trim(),
        "mine",
        "the agent's own key works"
    );
    let creds = s
        .get(
            &format!("/api/v1/services/{service_id}/credentials"),
            Some(&key),
        )
        .await;
    assert!(
        creds.body["data"]["credentials"]["private_key"].is_null(),
        "no private key for a brought key"
    );

    // Extend by 15 minutes with the extend token: charged once per idempotency key.
    let extend_token = r.body["data"]["order"]["management_tokens"]["extend_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let read_token = r.body["data"]["order"]["management_tokens"]["read_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let extend_path = format!("/api/v1/services/{service_id}/extend");
    let extend = |token: String, idem: &'static str, minutes: i64| {
        let req = s
            .client
            .post(s.url(&extend_path))
            .bearer_auth(token)
            .header("Idempotency-Key", idem)
            .json(&json!({"additional_minutes": minutes}));
        s.send(req)
    };
    let before = s.balance(&key).await;
    let expires_before = active["data"]["service"]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = extend(extend_token.clone(), "ext-1", 15).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(first.body["data"]["order"]["total_minor"], 15 * 5);
    assert_ne!(
        first.body["data"]["service"]["expires_at"]
            .as_str()
            .unwrap(),
        expires_before,
        "the lease is longer"
    );
    let replay = extend(extend_token.clone(), "ext-1", 15).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);
    assert_eq!(s.balance(&key).await, before - 75, "charged once");
    let reused = extend(extend_token.clone(), "ext-1", 20).await;
    assert_eq!(
        (reused.status.as_u16(), reused.code()),
        (422, "idempotency_key_reused")
    );
    let too_long = extend(extend_token.clone(), "ext-2", 400).await;
    assert_eq!(
        (too_long.status.as_u16(), too_long.param()),
        (400, "additional_minutes"),
        "beyond the product's 360 minutes"
    );
    let wrong_scope = extend(read_token, "ext-3", 15).await;
    assert_eq!(
        (wrong_scope.status.as_u16(), wrong_scope.code()),
        (403, "forbidden")
    );
    let no_key = s
        .send(
            s.client
                .post(s.url(&extend_path))
                .bearer_auth(&key)
                .json(&json!({"additional_minutes": 5})),
        )
        .await;
    assert_eq!(
        (no_key.status.as_u16(), no_key.param()),
        (400, "Idempotency-Key")
    );

    s.clock.advance(chrono::Duration::minutes(31));
    s.poll_until(
        &format!("/api/v1/services/{service_id}"),
        Some(&key),
        status_is("expired"),
    )
    .await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the machine is gone"
    );
    let expired = s
        .get("/api/v1/events?type=service.expired", Some(&key))
        .await;
    let events = expired.body["data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{:?}", expired.body);
    assert_eq!(events[0]["data"]["id"], service_id.as_str());
}

dual_test!(weak_or_broken_ssh_keys_are_refused_before_payment);
async fn weak_or_broken_ssh_keys_are_refused_before_payment(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let ready = s.get("/readyz", None).await;
    assert!(
        ready.body["provisioners"]["local"]["available"].is_boolean(),
        "{}",
        ready.body
    );
    let (_, key) = s.account(10_000).await;
    let mut refused = vec![
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJyb2tlbiBrZXkgYnl0ZXMgaGVyZQ== broken".to_owned(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let weak = dir.path().join("weak");
    match std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "1024", "-N", "", "-f"])
        .arg(&weak)
        .status()
    {
        Ok(status) if status.success() => refused.push(
            std::fs::read_to_string(dir.path().join("weak.pub"))
                .unwrap()
                .trim()
                .to_owned(),
        ),
        _ => eprintln!("ssh-keygen unavailable: the RSA-1024 case is skipped"),
    }
    for public in refused {
        let body = json!({"product_id": "bare-linux-machine", "configuration": {"ssh_public_key": public}});
        let r = s.order(Some(&key), "weak-key", &body).await;
        if r.status == 503 {
            // Local machines are unavailable on this host; nothing to check.
            return;
        }
        assert_eq!(
            (r.status.as_u16(), r.param()),
            (400, "configuration.ssh_public_key"),
            "{:?}",
            r.body
        );
    }
    assert_eq!(s.balance(&key).await, 10_000, "nothing charged");
}

dual_test!(resource_tokens_are_shown_once_and_reach_only_their_scope);
async fn resource_tokens_are_shown_once_and_reach_only_their_scope(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(10_000).await;
    let body = json!({"product_id": "bare-linux-machine", "configuration": {}});
    let r = s.order(Some(&key), "tokens", &body).await;
    if r.status == 503 {
        eprintln!("skipped: local machines are unavailable on this host");
        return;
    }
    assert_eq!(r.status, 202, "{:?}", r.body);
    let tokens = &r.body["data"]["order"]["management_tokens"];
    let read = tokens["read_token"]
        .as_str()
        .expect("tokens in the first response")
        .to_owned();
    let terminate = tokens["terminate_token"].as_str().unwrap().to_owned();
    let extend = tokens["extend_token"].as_str().unwrap().to_owned();
    assert!(
        read.starts_with("sf_res_")
            && terminate.starts_with("sf_res_")
            && extend.starts_with("sf_res_")
    );
    let replay = s.order(Some(&key), "tokens", &body).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert!(
        replay.body["data"]["order"]["management_tokens"].is_null(),
        "shown once: a replay has none"
    );
    let order = s
        .get(
            &format!(
                "/api/v1/orders/{}",
                r.body["data"]["order"]["id"].as_str().unwrap()
            ),
            Some(&key),
        )
        .await;
    assert!(order.body["data"]["order"]["management_tokens"].is_null());

    let service_id = r.body["data"]["order"]["service_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/services/{service_id}");
    assert_eq!(
        s.get(&path, Some(&read)).await.status,
        200,
        "read token reads"
    );
    for (token, what) in [
        (&read, "terminate with a read token"),
        (&extend, "terminate with an extend token"),
    ] {
        let r = s
            .send(s.client.delete(s.url(&path)).bearer_auth(token))
            .await;
        assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"), "{what}");
    }
    for r in [
        s.get(&format!("{path}/credentials"), Some(&read)).await,
        s.post(&format!("{path}/restart"), Some(&read), &json!({}))
            .await,
        s.get("/api/v1/orders", Some(&read)).await,
        s.get("/api/v1/account", Some(&read)).await,
        s.get("/api/v1/services", Some(&read)).await,
    ] {
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (403, "forbidden"),
            "{:?}",
            r.body
        );
    }
    let other = s.order(Some(&key), "tokens-2", &body).await;
    let other_path = format!(
        "/api/v1/services/{}",
        other.body["data"]["order"]["service_id"].as_str().unwrap()
    );
    assert_eq!(
        s.get(&other_path, Some(&read)).await.status,
        404,
        "another service does not exist for the token"
    );
    let done = s
        .send(s.client.delete(s.url(&path)).bearer_auth(&terminate))
        .await;
    assert_eq!(done.status, 202, "{:?}", done.body);
    assert_eq!(done.body["data"]["service"]["status"], "terminating");
    let forged = s.get(&path, Some("sf_res_not-a-token")).await;
    assert_eq!(forged.status, 401);
}

dual_test!(a_machine_that_cannot_be_provisioned_fails_its_order_and_refunds);
async fn a_machine_that_cannot_be_provisioned_fails_its_order_and_refunds(backend: Backend) {
    if std::process::Command::new("debootstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: debootstrap is not installed");
        return;
    }
    // No image is built here and the mirror refuses connections: every attempt fails.
    let images = tempfile::tempdir().unwrap();
    let image_dir = images.path().to_path_buf();
    let s = TestServer::start_with(&backend, |c| {
        c.image_dir = Some(image_dir.clone());
        c.image_mirror = Some("http://127.0.0.1:9/debian".into());
    })
    .await;
    let (_, key) = s.account(1_000).await;
    let r = s
        .order(
            Some(&key),
            "doomed",
            &json!({"product_id": "bare-linux-machine", "configuration": {}}),
        )
        .await;
    if r.status == 503 {
        eprintln!("skipped: local machines are unavailable on this host");
        return;
    }
    assert_eq!(r.status, 202);
    let order_id = r.body["data"]["order"]["id"].as_str().unwrap().to_owned();
    let service_id = r.body["data"]["order"]["service_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(s.balance(&key).await < 1_000);
    s.start_worker();
    // Each failed attempt is retried after its backoff on the injected clock.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let order = loop {
        let o = s
            .get(&format!("/api/v1/orders/{order_id}"), Some(&key))
            .await;
        if o.body["data"]["order"]["status"] == "failed" {
            break o.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order never failed: {}",
            o.body
        );
        s.clock.advance(chrono::Duration::hours(1));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(order["data"]["order"]["payment_status"], "refunded");
    assert_eq!(
        order["data"]["order"]["failure"]["code"],
        "fulfillment_failed"
    );
    assert_eq!(s.balance(&key).await, 1_000, "refunded in full");
    let kinds: Vec<String> = s
        .ledger(&key)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["refund", "charge", "top_up"]);
    let service = s
        .get(&format!("/api/v1/services/{service_id}"), Some(&key))
        .await;
    assert_eq!(service.body["data"]["service"]["status"], "failed");
}

dual_test!(the_kill_switch_stops_the_agents_machines_and_voids_its_tokens_until_reactivated);
async fn the_kill_switch_stops_the_agents_machines_and_voids_its_tokens_until_reactivated(
    backend: Backend,
) {
    if image_dir().is_none() {
        return;
    }
    let s = TestServer::start(&backend).await;
    s.start_worker();
    let (owner, agent, agent_key) = s.agent(10_000).await;
    let mut bought = Vec::new();
    for n in 0..2 {
        let r = s
            .order(
                Some(&agent_key),
                &format!("agent-machine-{n}"),
                &json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 30}}),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        bought.push(r.body["data"]["order"].clone());
    }
    let service_of = |order: &Value| order["service_id"].as_str().unwrap().to_owned();
    let mut machines = Vec::new();
    for order in &bought {
        let service_id = service_of(order);
        s.poll_until(
            &format!("/api/v1/services/{service_id}"),
            Some(&owner),
            status_is("active"),
        )
        .await;
        let creds_url = order["credentials_action"]["url"].as_str().unwrap();
        let creds = s.get(creds_url, None).await;
        assert_eq!(creds.status, 200, "{:?}", creds.body);
        let c = &creds.body["data"]["credentials"];
        let private_key = c["private_key"].as_str().unwrap().to_owned();
        let port = c["port"].as_u64().unwrap() as u16;
        assert_eq!(
            ssh(&private_key, port, "echo kept > /root/file && echo ok")
                .await
                .trim(),
            "ok"
        );
        let read_token = order["management_tokens"]["read_token"]
            .as_str()
            .unwrap()
            .to_owned();
        machines.push((
            service_id,
            creds_url.to_owned(),
            private_key,
            port,
            read_token,
        ));
    }

    let kill = s
        .post(
            &format!("/api/v1/agents/{agent}/kill-switch"),
            Some(&owner),
            &json!({"confirm": true, "reason": "runaway", "stop_machines": true}),
        )
        .await;
    assert_eq!(kill.status, 200, "{:?}", kill.body);
    for (service_id, creds_url, _, port, read_token) in &machines {
        let stopped = s
            .get(&format!("/api/v1/services/{service_id}"), Some(&owner))
            .await;
        assert_eq!(stopped.body["data"]["service"]["status"], "stopped");
        assert_eq!(
            stopped.body["data"]["service"]["server"]["power_state"],
            "stopped"
        );
        let by_token = s
            .get(&format!("/api/v1/services/{service_id}"), Some(read_token))
            .await;
        assert_eq!(by_token.status, 401, "a voided token: {:?}", by_token.body);
        let signed = s.get(creds_url, None).await;
        assert_eq!(
            (signed.status.as_u16(), signed.code()),
            (403, "kill_switch_active"),
            "{:?}",
            signed.body
        );
        // The machine goes down once the worker ran its stop job (a real system settling).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stopped machine still answers on {port}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    let back = s
        .post(
            &format!("/api/v1/agents/{agent}/reactivate"),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(back.status, 200, "{:?}", back.body);
    for (service_id, creds_url, private_key, _, _) in &machines {
        let active = s
            .poll_until(
                &format!("/api/v1/services/{service_id}"),
                Some(&owner),
                status_is("active"),
            )
            .await;
        let port = active["data"]["service"]["server"]["ssh_port"]
            .as_u64()
            .unwrap() as u16;
        assert_eq!(
            ssh(private_key, port, "cat /root/file").await.trim(),
            "kept",
            "the files survived the stop"
        );
        assert_eq!(
            s.get(creds_url, None).await.status,
            200,
            "the signed URL works again"
        );
    }

    // Opting out: the machines keep running, their tokens stay void.
    let kept = s
        .post(
            &format!("/api/v1/agents/{agent}/kill-switch"),
            Some(&owner),
            &json!({"confirm": true, "stop_machines": false}),
        )
        .await;
    assert_eq!(kept.status, 200, "{:?}", kept.body);
    for (service_id, ..) in &machines {
        let running = s
            .get(&format!("/api/v1/services/{service_id}"), Some(&owner))
            .await;
        assert_eq!(running.body["data"]["service"]["status"], "active");
    }
}

dual_test!(the_first_machine_of_an_image_not_yet_built_is_told_it_waits_for_the_build);
async fn the_first_machine_of_an_image_not_yet_built_is_told_it_waits_for_the_build(
    backend: Backend,
) {
    let Some(built) = image_dir() else {
        return;
    };
    let (_, most) = storefront_providers::local::image::TYPICAL_BUILD_SECONDS;
    let empty = tempfile::tempdir().unwrap();
    for (images, needs_build) in [(built, false), (empty.path().to_path_buf(), true)] {
        // No worker runs here: the order is only placed, nothing is built.
        let s = TestServer::start_with(&backend, |c| c.image_dir = Some(images.clone())).await;
        let (_, key) = s.account(10_000).await;
        let r = s
            .order(
                Some(&key),
                "estimate-1",
                &json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 15}}),
            )
            .await;
        if r.status == 503 {
            // Local machines are not available on this host at all.
            return;
        }
        assert_eq!(r.status, 202, "{:?}", r.body);
        let estimate = &r.body["data"]["order"]["provisioning_estimate"];
        let max = estimate["max_seconds"].as_u64().unwrap();
        assert_eq!(
            max >= most,
            needs_build,
            "estimate {estimate} (image to build: {needs_build})"
        );
    }
}
