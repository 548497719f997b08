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

/// Runs `command` on 127.0.0.1:`port` as root with the OpenSSH client and the given private key,
/// accepting whatever host key the machine shows; returns stdout, panicking on failure.
pub async fn ssh(private_key: &str, port: u16, command: &str) -> String {
    run_ssh(private_key, None, "127.0.0.1", &port.to_string(), command).await
}

/// Runs `command` over SSH as root, trusting only the host key in `known_hosts_line` (the line the
/// storefront hands over): the connection fails if the machine presents any other key.
pub async fn ssh_pinned(private_key: &str, known_hosts_line: &str, command: &str) -> String {
    let (host, port) = known_hosts_line
        .split_whitespace()
        .next()
        .and_then(|h| h.strip_prefix('['))
        .and_then(|h| h.split_once("]:"))
        .expect("a [host]:port known_hosts line");
    run_ssh(private_key, Some(known_hosts_line), host, port, command).await
}

async fn run_ssh(
    private_key: &str,
    known_hosts_line: Option<&str>,
    host: &str,
    port: &str,
    command: &str,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    std::fs::write(&key, private_key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut ssh = tokio::process::Command::new("ssh");
    ssh.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
    ]);
    match known_hosts_line {
        Some(line) => {
            let known_hosts = dir.path().join("known_hosts");
            std::fs::write(&known_hosts, format!("{line}\n")).unwrap();
            ssh.args(["-o", "StrictHostKeyChecking=yes", "-o"])
                .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
                .args(["-o", "GlobalKnownHostsFile=/dev/null"]);
        }
        None => {
            ssh.args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ]);
        }
    }
    let out = ssh
        .arg("-i")
        .arg(&key)
        .args(["-p", port, &format!("root@{host}"), command])
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
