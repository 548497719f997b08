//! The local provisioner against the real host: namespaces, overlayfs, sshd, the OpenSSH client.

mod common;

use common::machines::{image_dir, ssh};
use std::time::Duration;
use storefront_app::ports::{MachineSpec, Provisioner};
use storefront_providers::local::LocalProvisioner;

async fn wait_ready(p: &LocalProvisioner, id: &str) {
    for _ in 0..200 {
        if p.ready(id).await.unwrap() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("lease {id} never answered an SSH handshake");
}

#[tokio::test]
async fn a_lease_is_a_machine_you_can_ssh_into_restart_reinstall_and_terminate() {
    let Some(images) = image_dir() else { return };
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvisioner::new(
        data.path(),
        Some(images),
        None,
        env!("CARGO_BIN_EXE_storefront").into(),
    );
    let spec = MachineSpec {
        id: "svc_test1".into(),
        image: "debian-12".into(),
        hostname: "lease-one".into(),
        authorized_key: None,
    };
    let m = p.create(&spec).await.unwrap();
    let key = m.private_key.clone().expect("a key pair was generated");
    wait_ready(&p, "svc_test1").await;

    let out = ssh(&key, m.port, "id -u; hostname; echo kept > /root/file; (sleep 1000 </dev/null >/dev/null 2>&1 &) ; cat /proc/1/comm").await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "lease-one", "sshd"],
        "{out}"
    );
    assert!(
        !ssh(&key, m.port, "ls /").await.contains("leases"),
        "the host is not visible"
    );
    assert_eq!(
        ssh(&key, m.port, "pgrep -c sleep").await.trim(),
        "1",
        "processes outlive the SSH session that started them"
    );

    let again = p.create(&spec).await.unwrap();
    assert_eq!(
        (again.port, again.private_key),
        (m.port, None),
        "create is idempotent and shows the key once"
    );

    let r = p.restart("svc_test1").await.unwrap();
    wait_ready(&p, "svc_test1").await;
    let out = ssh(&key, r.port, "cat /root/file; pgrep -c sleep || true").await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["kept", "0"],
        "files kept, processes gone: {out}"
    );

    let n = p.reinstall(&spec).await.unwrap();
    wait_ready(&p, "svc_test1").await;
    assert_ne!(
        n.host_key_fingerprint, m.host_key_fingerprint,
        "a new host key"
    );
    let out = ssh(
        &key,
        n.port,
        "test -e /root/file && echo present || echo gone",
    )
    .await;
    assert_eq!(out.trim(), "gone");

    p.terminate("svc_test1").await.unwrap();
    assert!(!p.ready("svc_test1").await.unwrap());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", n.port)).is_err(),
        "connection refused"
    );
    assert!(
        p.list_owned().await.unwrap().is_empty(),
        "nothing left on disk"
    );
    p.terminate("svc_test1").await.unwrap();
}
