//! Helpers for tests that run real local machines.

use std::path::PathBuf;

/// The directory with a built `debian-12` image, from `STOREFRONT_TEST_IMAGE_DIR`; `None` (with a
/// printed reason) when it is not set or the image is not built there.
pub fn image_dir() -> Option<PathBuf> {
    let dir = std::env::var("STOREFRONT_TEST_IMAGE_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    match dir {
        Some(d) if d.join("debian-12/complete").exists() => Some(d),
        _ => {
            eprintln!("skipped: set STOREFRONT_TEST_IMAGE_DIR to a directory where `storefront image build` has built debian-12 (needs root)");
            None
        }
    }
}

/// Runs `command` on 127.0.0.1:`port` as root with the OpenSSH client and the given private key;
/// returns stdout, panicking on failure.
pub async fn ssh(private_key: &str, port: u16, command: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    std::fs::write(&key, private_key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = tokio::process::Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-i",
        ])
        .arg(&key)
        .args(["-p", &port.to_string(), "root@127.0.0.1", command])
        .output()
        .await
        .expect("the OpenSSH client runs");
    assert!(
        out.status.success(),
        "ssh {command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `command` over SSH as root, trusting only the host key in `known_hosts_line` (the line the
/// storefront hands over): the connection fails if the machine presents any other key.
pub async fn ssh_pinned(private_key: &str, known_hosts_line: &str, command: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    std::fs::write(&key, private_key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{known_hosts_line}\n")).unwrap();
    let (host, port) = known_hosts_line
        .split_whitespace()
        .next()
        .and_then(|h| h.strip_prefix('['))
        .and_then(|h| h.split_once("]:"))
        .expect("a [host]:port known_hosts line");
    let out = tokio::process::Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-i",
        ])
        .arg(&key)
        .args(["-p", port, &format!("root@{host}"), command])
        .output()
        .await
        .expect("the OpenSSH client runs");
    assert!(
        out.status.success(),
        "ssh {command:?} (pinned) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
