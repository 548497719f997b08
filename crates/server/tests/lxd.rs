//! The LXD/Incus provisioner against a real LXD daemon (`.ci/lxd-setup` starts Debian's LXD 5.0
//! with a `dir` pool, no managed network, and the project's image as `storefront-debian-12`):
//! order → active → pinned SSH → restart → reinstall → extend → backups → terminate, a job
//! retried after a crash adopting the instance it created, and two worker processes on one
//! PostgreSQL database acting on the same machine. Each test runs in an LXD project of its own,
//! so reconciliation in one never sees another's instances. Without
//! `STOREFRONT_TEST_LXD_SOCKET` the tests are skipped with a message.

mod common;

use common::binary::{admin_account, start, terminate};
use common::machines::ssh_pinned;
use common::{Backend, TestServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use storefront::config::LxdConfig;
use storefront_app::ports::{MachineSpec, Provisioner};
use storefront_providers::lxd::client::Body;
use storefront_providers::lxd::{Endpoint, LxdClient, LxdOptions, LxdProvisioner};

const ALIAS: &str = "storefront-debian-12";

const CATALOG: &str = r#"
[[products]]
id = "lxd-machine"
sku = "lxd-machine-hour"
name = "LXD machine"
category = "compute"
description = "A system container on the provider's LXD (1 vCPU, 512 MiB, 2 GiB)."
kind = "async"
fulfiller = "lxd"
management_capabilities = ["server:restart", "server:reinstall", "lease:extend", "lease:terminate"]
max_quantity = 1
machine = { vcpus = 1, memory_mib = 512, disk_gib = 2 }
[products.pricing]
model = "per_hour"
unit_minor = 10
currency = "usd"
unit_field = "duration_hours"
min_units = 1
max_units = 24
addons = [{ field = "backups_enabled", unit_minor = 5, description = "Daily snapshots" }]
[[products.fields]]
name = "duration_hours"
type = "integer"
required = true
minimum = 1
maximum = 24
description = "Hours paid upfront."
[[products.fields]]
name = "image"
type = "enum"
values = ["debian-12", "ubuntu-24.04"]
default = "debian-12"
description = "Operating system image."
[[products.fields]]
name = "backups_enabled"
type = "boolean"
default = false
description = "Daily snapshots, kept a week."
"#;

fn lxd_socket() -> Option<PathBuf> {
    match std::env::var("STOREFRONT_TEST_LXD_SOCKET") {
        Ok(s) if !s.is_empty() => Some(s.into()),
        _ => {
            eprintln!("skipped: set STOREFRONT_TEST_LXD_SOCKET to a running LXD's socket (.ci/lxd-setup starts one)");
            None
        }
    }
}

/// An LXD project of the test's own, sharing the default project's images and profiles.
struct Project {
    name: String,
    client: LxdClient,
    socket: PathBuf,
}

impl Project {
    async fn create(socket: &Path) -> Self {
        let unique = common::uuid_like();
        let name = format!("sf-test-{}", &unique[unique.len() - 12..]);
        let admin = LxdClient::new(&Endpoint::Unix(socket.into()), "default").unwrap();
        let body = json!({"name": name, "config": {"features.images": "false", "features.profiles": "false", "features.storage.volumes": "false"}});
        admin
            .call("POST", "/1.0/projects", Body::Json(&body))
            .await
            .expect("a project for the test");
        Self {
            client: LxdClient::new(&Endpoint::Unix(socket.into()), &name).unwrap(),
            name,
            socket: socket.into(),
        }
    }

    async fn instance(
        &self,
        service_id: &str,
    ) -> Result<Value, storefront_providers::lxd::LxdError> {
        let name = format!("sf-{}", service_id.replace('_', "-").to_ascii_lowercase());
        self.client.get(&format!("/1.0/instances/{name}")).await
    }

    fn config(&self) -> LxdConfig {
        LxdConfig {
            socket: Some(self.socket.clone()),
            project: self.name.clone(),
            images: [("debian-12".to_owned(), ALIAS.to_owned())].into(),
            ..LxdConfig::default()
        }
    }

    /// Removes what the test left (a failed test may leave instances) and the project.
    async fn remove(self) {
        if let Ok(instances) = self.client.get("/1.0/instances").await {
            for path in instances
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let stop = json!({"action": "stop", "force": true, "timeout": 30});
                let _ = self
                    .client
                    .act("PUT", &format!("{path}/state"), Body::Json(&stop))
                    .await;
                let _ = self.client.act("DELETE", path, Body::Empty).await;
            }
        }
        let admin = LxdClient::new(&Endpoint::Unix(self.socket.clone()), "default").unwrap();
        admin
            .call(
                "DELETE",
                &format!("/1.0/projects/{}", self.name),
                Body::Empty,
            )
            .await
            .expect("the test's project is removed");
    }
}

fn catalog_file(dir: &Path) -> PathBuf {
    let path = dir.join("catalog.toml");
    std::fs::write(&path, CATALOG).unwrap();
    path
}

dual_test!(an_lxd_machine_lives_its_whole_life_on_the_engine);
async fn an_lxd_machine_lives_its_whole_life_on_the_engine(backend: Backend) {
    let Some(socket) = lxd_socket() else { return };
    let project = Project::create(&socket).await;
    let files = tempfile::tempdir().unwrap();
    let catalog = catalog_file(files.path());
    let lxd = project.config();
    let s = TestServer::start_with(&backend, |c| {
        c.catalog_file = Some(catalog);
        c.lxd = Some(lxd);
    })
    .await;
    s.start_worker();

    // The catalog offers only the images the engine holds; /readyz says what is enforced.
    let product = s.get("/api/v1/products/lxd-machine", None).await;
    let product = &product.body["data"]["product"];
    assert_eq!(product["available"], true, "{product}");
    assert_eq!(
        product["config_schema"]["properties"]["image"]["enum"],
        json!(["debian-12"]),
        "ubuntu-24.04 is not on the engine"
    );
    let ready = s.get("/readyz", None).await;
    let lxd = &ready.body["provisioners"]["lxd"];
    assert_eq!(lxd["available"], true, "{}", ready.body);
    assert_eq!(lxd["isolation"]["memory"]["enforced"], true);
    assert_eq!(
        lxd["isolation"]["network"]["enforced"], true,
        "the default profile has no network device here"
    );
    assert_eq!(
        lxd["isolation"]["disk"]["enforced"], false,
        "a dir pool does not enforce root disk sizes"
    );

    let (_, key) = s.account(10_000).await;
    let r = s
        .order(
            Some(&key),
            "lxd-1",
            &json!({"product_id": "lxd-machine", "configuration": {"duration_hours": 1, "backups_enabled": true}}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let order_id = r.body["data"]["order"]["id"].as_str().unwrap().to_owned();
    let service_id = r.body["data"]["order"]["service_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.poll_until(&format!("/api/v1/orders/{order_id}"), Some(&key), |b| {
        b["data"]["order"]["credentials_available"] == true
    })
    .await;
    let creds = s
        .get(
            &format!("/api/v1/services/{service_id}/credentials"),
            Some(&key),
        )
        .await;
    let c = &creds.body["data"]["credentials"];
    let private_key = c["private_key"].as_str().unwrap().to_owned();
    let known_host = c["known_hosts_line"].as_str().unwrap().to_owned();
    let out = ssh_pinned(
        &private_key,
        &known_host,
        "nproc; cat /proc/1/comm; echo kept > /root/file; (sleep 999 </dev/null >/dev/null 2>&1 &); echo ok",
    )
    .await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1", "systemd", "ok"],
        "one vCPU, a real init"
    );

    // The engine holds the machine with its tag, limits and backup schedule.
    let instance = project.instance(&service_id).await.unwrap();
    let config = &instance["config"];
    assert_eq!(config["user.storefront.service_id"], service_id.as_str());
    assert_eq!(config["limits.memory"], "512MiB");
    assert_eq!(config["limits.cpu"], "1");
    assert_eq!(config["snapshots.schedule"], "@daily");
    assert_eq!(config["security.idmap.isolated"], "true", "ids of its own");
    assert_eq!(instance["expanded_devices"]["root"]["size"], "2GiB");

    // Restart: processes gone, files kept.
    s.service_action_done(&key, &service_id, "restart").await;
    let out = ssh_pinned(
        &private_key,
        &known_host,
        "cat /root/file; pgrep -c sleep || true",
    )
    .await;
    assert_eq!(out.lines().collect::<Vec<_>>(), ["kept", "0"]);

    // Reinstall: files gone, a new host key announced, same address.
    let after = s.service_action_done(&key, &service_id, "reinstall").await;
    let server = &after["data"]["service"]["server"];
    let new_known_host = server["known_hosts_line"].as_str().unwrap().to_owned();
    assert_ne!(new_known_host, known_host, "a new host key");
    assert_eq!(server["ssh_port"], c["port"], "the same port");
    let out = ssh_pinned(
        &private_key,
        &new_known_host,
        "test -e /root/file && echo present || echo gone",
    )
    .await;
    assert_eq!(out.trim(), "gone");
    let events = s
        .get("/api/v1/events?type=service.reinstalled", Some(&key))
        .await;
    assert_eq!(
        events.body["data"]["events"][0]["data"]["server"]["known_hosts_line"],
        new_known_host.as_str()
    );

    // Extend: a longer lease, charged.
    let before = after["data"]["service"]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let extend = s
        .send(
            s.client
                .post(s.url(&format!("/api/v1/services/{service_id}/extend")))
                .bearer_auth(&key)
                .header("Idempotency-Key", "extend-lxd-1")
                .json(&json!({"additional_minutes": 60})),
        )
        .await;
    assert_eq!(extend.status, 202, "{:?}", extend.body);
    let extended = s
        .get(&format!("/api/v1/services/{service_id}"), Some(&key))
        .await;
    assert!(
        extended.body["data"]["service"]["expires_at"]
            .as_str()
            .unwrap()
            > before.as_str()
    );

    // Backups: what the schedule takes is listed on the service (taken here as the schedule would).
    assert_eq!(extended.body["data"]["service"]["backups"], json!([]));
    let name = instance["name"].as_str().unwrap();
    project
        .client
        .act(
            "POST",
            &format!("/1.0/instances/{name}/snapshots"),
            Body::Json(&json!({"name": "backup-0"})),
        )
        .await
        .unwrap();
    let listed = s
        .get(&format!("/api/v1/services/{service_id}"), Some(&key))
        .await;
    assert_eq!(
        listed.body["data"]["service"]["backups"][0]["name"],
        "backup-0"
    );

    // Terminate: the instance is gone from the engine.
    s.terminate_service_done(&key, &service_id).await;
    assert!(project
        .instance(&service_id)
        .await
        .unwrap_err()
        .is_not_found());
    project.remove().await;
}

/// The remote mode: the same daemon over HTTPS with a client certificate it trusts
/// (`STOREFRONT_TEST_LXD_URL`, and `STOREFRONT_TEST_LXD_CERTS` holding client.crt, client.key and
/// the server's server.crt).
fn lxd_https() -> Option<Endpoint> {
    let url = std::env::var("STOREFRONT_TEST_LXD_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let certs = std::env::var("STOREFRONT_TEST_LXD_CERTS")
        .ok()
        .filter(|c| !c.is_empty());
    let (Some(url), Some(certs)) = (url, certs) else {
        eprintln!("skipped the HTTPS run: set STOREFRONT_TEST_LXD_URL and STOREFRONT_TEST_LXD_CERTS (.ci/lxd-setup makes them)");
        return None;
    };
    let read = |name: &str| std::fs::read_to_string(Path::new(&certs).join(name)).unwrap();
    Some(Endpoint::Https {
        url,
        client_certificate: read("client.crt"),
        client_key: read("client.key"),
        server_certificate: Some(read("server.crt")),
    })
}

#[tokio::test]
async fn a_retried_job_adopts_the_instance_it_created() {
    let Some(socket) = lxd_socket() else { return };
    adopts_after_a_crash(&socket, Endpoint::Unix(socket.clone())).await;
}

#[tokio::test]
async fn over_https_with_a_client_certificate_a_retried_job_adopts_its_instance() {
    let Some(socket) = lxd_socket() else { return };
    let Some(endpoint) = lxd_https() else { return };
    adopts_after_a_crash(&socket, endpoint).await;
}

async fn adopts_after_a_crash(socket: &Path, endpoint: Endpoint) {
    let project = Project::create(socket).await;
    let options = LxdOptions {
        endpoint,
        project: project.name.clone(),
        instance_type: "container".into(),
        storage_pool: "default".into(),
        ssh_listen_address: "127.0.0.1".into(),
        ssh_host: "127.0.0.1".into(),
        ssh_ports: (20_000, 29_999),
        images: [("debian-12".to_owned(), ALIAS.to_owned())].into(),
        regions: Default::default(),
        backup_schedule: "@daily".into(),
        backup_expiry: "7d".into(),
        key_secret: [7; 32],
    };
    let spec = MachineSpec {
        id: "svc_adopted".into(),
        image: "debian-12".into(),
        hostname: "adopted".into(),
        authorized_key: None,
        size: None,
        region: None,
        backups: false,
    };
    let first = LxdProvisioner::connect(options.clone()).await;
    let created = first.create(&spec).await.unwrap();
    // The process dies before the job records the machine; a new one runs the job again.
    drop(first);
    let second = LxdProvisioner::connect(options).await;
    let adopted = second.create(&spec).await.unwrap();
    assert_eq!(
        adopted, created,
        "the same machine, the same keys handed over"
    );
    assert_eq!(
        second.list_owned().await.unwrap(),
        ["svc_adopted"],
        "no second instance"
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !second.ready("svc_adopted").await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let line = storefront_domain::service::known_hosts_line(
        &adopted.host,
        adopted.port,
        &adopted.host_public_key,
    );
    assert_eq!(
        ssh_pinned(adopted.private_key.as_deref().unwrap(), &line, "echo in")
            .await
            .trim(),
        "in"
    );
    second.terminate("svc_adopted").await.unwrap();
    assert!(second.list_owned().await.unwrap().is_empty());
    project.remove().await;
}

/// Two worker processes on one PostgreSQL database: the machine one provisioned is restarted and
/// removed by the other after the first is gone — machines no longer live in a process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_act_on_the_same_lxd_machines() {
    let Some(socket) = lxd_socket() else { return };
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let project = Project::create(&socket).await;
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh_database_url(dir.path()).await;
    let db = Some(db.as_str());
    catalog_file(dir.path());
    std::fs::write(
        dir.path().join("storefront.toml"),
        format!(
            "catalog_file = \"catalog.toml\"\n[lxd]\nsocket = \"{}\"\nproject = \"{}\"\nimages = {{ \"debian-12\" = \"{ALIAS}\" }}\n",
            socket.display(),
            project.name
        ),
    )
    .unwrap();
    let api = start(dir.path(), db, &["--role", "api"]).await;
    let first = start(dir.path(), db, &["--role", "worker"]).await;
    let (_, key) = admin_account(dir.path(), db, "workers@example.com", 10_000).await;
    let http = reqwest::Client::new();
    let order: Value = http
        .post(format!("{}/api/v1/orders", api.base))
        .bearer_auth(&key)
        .header("Idempotency-Key", "two-workers-1")
        .json(&json!({"product_id": "lxd-machine", "configuration": {"duration_hours": 1}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_id = order["data"]["order"]["id"].as_str().unwrap().to_owned();
    let service_id = order["data"]["order"]["service_id"]
        .as_str()
        .unwrap()
        .to_owned();
    common::binary::poll_order(&http, &api.base, &key, &order_id, |o| {
        o["credentials_available"] == true
    })
    .await;
    assert!(terminate(first).await.success());
    let second = start(dir.path(), db, &["--role", "worker"]).await;
    let service_url = format!("{}/api/v1/services/{service_id}", api.base);
    let restart = http
        .post(format!("{service_url}/restart"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(restart.status(), 202);
    let wait_for = |status: &'static str| {
        let http = http.clone();
        let url = service_url.clone();
        let key = key.clone();
        async move {
            let deadline = tokio::time::Instant::now() + common::binary::GUARD;
            loop {
                let body = common::binary::get_json(&http, &url, Some(&key)).await;
                if body["data"]["service"]["status"] == status {
                    return body;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never {status}: {body}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    wait_for("active").await;
    let creds =
        common::binary::get_json(&http, &format!("{service_url}/credentials"), Some(&key)).await;
    let c = &creds["data"]["credentials"];
    assert_eq!(
        ssh_pinned(
            c["private_key"].as_str().unwrap(),
            c["known_hosts_line"].as_str().unwrap(),
            "echo restarted by the second worker"
        )
        .await
        .trim(),
        "restarted by the second worker"
    );
    let del = http
        .delete(&service_url)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 202);
    wait_for("terminated").await;
    assert!(project
        .instance(&service_id)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(terminate(second).await.success());
    assert!(terminate(api).await.success());
    project.remove().await;
}
