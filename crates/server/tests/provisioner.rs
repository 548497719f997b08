//! The local provisioner against the real host: namespaces, overlayfs, sshd, the OpenSSH client.

mod common;

use common::machines::{image_dir, ssh};
use common::{Backend, TestServer};
use std::time::Duration;
use storefront_app::ports::{MachineSpec, Provisioner};
use storefront_domain::catalog::MachineSize;
use storefront_providers::local::{LocalOptions, LocalProvisioner};

/// A local provisioner over `data`, with the test image directory.
fn provisioner(data: &std::path::Path, images: std::path::PathBuf) -> LocalProvisioner {
    LocalProvisioner::new(LocalOptions {
        data_dir: data.into(),
        image_dir: Some(images),
        mirror: None,
        runner: env!("CARGO_BIN_EXE_storefront").into(),
        allow_private_egress: false,
    })
}

/// A debian-12 machine of no particular size, with a key pair generated for it.
fn debian_12(id: &str, hostname: &str) -> MachineSpec {
    MachineSpec {
        id: id.into(),
        image: "debian-12".into(),
        hostname: hostname.into(),
        authorized_key: None,
        size: None,
        region: None,
        backups: false,
    }
}

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
    let p = provisioner(data.path(), images);
    let spec = debian_12("svc_test1", "lease-one");
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

/// Processes whose command line names `needle` (a lease's own directory is in its runner's).
fn processes_naming(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

#[tokio::test]
async fn a_lease_whose_runner_is_killed_outright_stops_with_it() {
    let Some(images) = image_dir() else { return };
    let data = tempfile::tempdir().unwrap();
    let p = provisioner(data.path(), images);
    let spec = debian_12("svc_killed", "lease-killed");
    let m = p.create(&spec).await.unwrap();
    wait_ready(&p, "svc_killed").await;
    let lease_dir = data.path().display().to_string();
    // The runner, the creator it forked (the lease's init's parent) and slirp4netns.
    let running = processes_naming(&lease_dir);
    assert!(running.len() >= 2, "{running:?}");
    let answer = ssh(m.private_key.as_deref().unwrap(), m.port, "echo up").await;
    assert_eq!(answer.trim(), "up");

    // Dropping the provisioner SIGKILLs its runners: no runner code gets to stop the lease.
    drop(p);
    // An exiting process loses its command line before it closes its sockets, so the port is
    // waited for too, within the same bound.
    let port_open = || std::net::TcpStream::connect(("127.0.0.1", m.port)).is_ok();
    let mut left = processes_naming(&lease_dir);
    for _ in 0..200 {
        if left.is_empty() && !port_open() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = processes_naming(&lease_dir);
    }
    assert!(left.is_empty(), "the lease outlived its runner: {left:?}");
    assert!(!port_open(), "its SSH port is closed");
}

/// A network namespace the test makes, joined to the host by a veth pair, with a listener that
/// answers `outside`: a host on the internet, as far as a lease can tell. Removed on drop.
struct OutsideHost {
    name: String,
    listener: std::process::Child,
}

/// The test's "internet": TEST-NET-2, which no lease rule refuses and no real host uses.
const OUTSIDE_HOST: &str = "198.51.100.2";
const OUTSIDE_PORT: u16 = 8099;
/// The host's own end of that veth pair: an address of the host, which leases must not reach.
const OUTSIDE_HOST_SIDE: &str = "198.51.100.1";

impl OutsideHost {
    fn start() -> Self {
        let name = format!("sfout{}", std::process::id());
        let host_end = format!("sfh{}", std::process::id());
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "ip {args:?}");
        };
        run(&["netns", "add", &name]);
        run(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]);
        run(&[
            "addr",
            "add",
            &format!("{OUTSIDE_HOST_SIDE}/30"),
            "dev",
            &host_end,
        ]);
        run(&["link", "set", &host_end, "up"]);
        run(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{OUTSIDE_HOST}/30"),
            "dev",
            "eth0",
        ]);
        run(&["-n", &name, "link", "set", "eth0", "up"]);
        run(&["-n", &name, "link", "set", "lo", "up"]);
        let listener = std::process::Command::new("ip")
            .args(["netns", "exec", &name, "python3", "-c"])
            .arg(format!(
                "import socket\ns = socket.socket()\ns.bind(('{OUTSIDE_HOST}', {OUTSIDE_PORT}))\ns.listen()\nprint('listening', flush=True)\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b'outside\\n')\n    c.close()\n"
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut host = Self { name, listener };
        // The listener says when it is bound.
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(host.listener.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "listening");
        host
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
        // Deleting the namespace deletes the veth pair with it.
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// What a connection from inside the lease to `host:port` does: `connected`, or why not.
fn probe(host: &str, port: u16) -> String {
    format!(
        "echo {host}:{port} $(timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port} && echo connected && cat <&3' 2>&1 | tr '\\n' ' ')"
    )
}

#[tokio::test]
async fn a_lease_reaches_the_outside_but_not_the_host_and_is_held_to_its_size() {
    let Some(images) = image_dir() else { return };
    if !std::process::Command::new("which")
        .arg("slirp4netns")
        .status()
        .unwrap()
        .success()
    {
        eprintln!("skipped: slirp4netns is not installed (apt-get install slirp4netns)");
        return;
    }
    let outside = OutsideHost::start();
    // Host services: the storefront, a listener on loopback, one on every interface — reached, if
    // the fence failed, at the host's address on the test's own veth (no other host address is
    // probed: a test sends nothing to addresses it did not make).
    let storefront = TestServer::start(&Backend::Sqlite).await;
    let storefront_port: u16 = storefront.base.rsplit(':').next().unwrap().parse().unwrap();
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let everywhere = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let data = tempfile::tempdir().unwrap();
    let p = provisioner(data.path(), images);
    let isolation = p.isolation();
    let enforced = |name: &str| isolation.iter().find(|i| i.name == name).unwrap().enforced;
    assert!(enforced("network"), "{isolation:?}");
    let spec = MachineSpec {
        size: Some(MachineSize {
            vcpus: 1,
            memory_mib: 1024,
            disk_gib: 10,
            max_processes: 256,
        }),
        ..debian_12("svc_isolated", "isolated")
    };
    let m = p.create(&spec).await.unwrap();
    let key = m.private_key.clone().unwrap();
    wait_ready(&p, "svc_isolated").await;

    let mut script = vec![
        probe(OUTSIDE_HOST, OUTSIDE_PORT),
        probe("127.0.0.1", storefront_port),
        probe("10.0.2.2", storefront_port),
        probe("127.0.0.1", loopback.local_addr().unwrap().port()),
        probe("10.0.2.2", loopback.local_addr().unwrap().port()),
    ];
    // Private, link-local and metadata ranges are refused by the same routes, and slirp's
    // resolver address (which relays to the host's resolver, possibly a private address) is
    // limited to DNS: they are checked as rules (storefront_domain::egress, the runner's
    // `network_commands`), since a test may not send traffic there.
    script.push(probe(
        OUTSIDE_HOST_SIDE,
        everywhere.local_addr().unwrap().port(),
    ));
    let out = ssh(&key, m.port, &script.join("; ")).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("{OUTSIDE_HOST}:{OUTSIDE_PORT} connected outside"),
        "the lease reaches a host outside: {out}"
    );
    for line in &lines[1..] {
        assert!(
            !line.contains("connected"),
            "reached from inside the lease: {line}\n{out}"
        );
    }
    assert_eq!(lines.len(), script.len(), "{out}");

    if enforced("memory") {
        // A memory hog is killed inside its lease; the lease and the host carry on.
        let out = ssh(
            &key,
            m.port,
            "dd if=/dev/zero of=/dev/null bs=1536M count=1 2>/dev/null; echo dd=$?",
        )
        .await;
        assert_eq!(
            out.trim(),
            "dd=137",
            "killed by the lease's memory limit: {out}"
        );
        assert_eq!(ssh(&key, m.port, "echo alive").await.trim(), "alive");
        assert_eq!(storefront.get("/healthz", None).await.status, 200);
    } else {
        eprintln!("memory limits are not enforced on this host: the hog check is skipped");
    }
    p.terminate("svc_isolated").await.unwrap();
    drop(outside);
}
