//! `LocalProvisioner`: machines on this host, one lease runner per machine (see `runner.rs`).
//!
//! On disk, `DATA/leases/<service id>/` holds `lease.json` (port, image, keys' public halves),
//! `upper/` and `work/` (the lease's copy-on-write layer), `merged/` (its root while it runs) and
//! `console.log` (sshd's output). In memory, the runner process of each running lease; a lease
//! does not outlive the process that started it, and the reconciler starts it again.

use super::cgroups::Cgroups;
use super::image::ImageStore;
use super::keys::{check_public_key, fingerprint_of, generate_ed25519, without_comment};
use super::runner::{LeaseNetwork, LeaseSpec, UID_BASE};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use storefront_app::ports::{Isolation, Machine, MachineSpec, ProvisionError, Provisioner};
use storefront_domain::catalog::MachineSize;
use storefront_domain::egress;
use tokio::process::Child;
use tokio::sync::Mutex;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    port: u16,
    image: String,
    hostname: String,
    authorized_key: String,
    host_key_fingerprint: String,
    /// Absent from records written before host keys were handed over; read from the layer then.
    #[serde(default)]
    host_public_key: String,
    /// The resources the lease is held to; `None`: unconfined.
    #[serde(default)]
    size: Option<MachineSize>,
}

/// How the operator set up local machines.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub data_dir: PathBuf,
    /// Where images are built (default: `images` in the data directory).
    pub image_dir: Option<PathBuf>,
    pub mirror: Option<String>,
    /// The `storefront` executable that has the `lease-run` subcommand.
    pub runner: PathBuf,
    /// Lets leases reach private, carrier-grade NAT and link-local ranges (a lab, not a
    /// storefront selling to strangers). The host's own addresses stay refused.
    pub allow_private_egress: bool,
}

pub struct LocalProvisioner {
    leases: PathBuf,
    images: ImageStore,
    mirror: Option<String>,
    /// The `storefront` executable that has the `lease-run` subcommand.
    runner: PathBuf,
    running: Mutex<HashMap<String, Child>>,
    unavailable: Option<String>,
    /// Serializes image builds.
    build_lock: Arc<Mutex<()>>,
    tools: Result<Tools, String>,
    cgroups: Cgroups,
    allow_private_egress: bool,
}

/// The host programs a lease's network needs.
#[derive(Debug, Clone)]
struct Tools {
    slirp4netns: PathBuf,
    ip: PathBuf,
}

/// Finds an executable on `PATH` or in the system directories a service's `PATH` may lack.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn probe_tools() -> Result<Tools, String> {
    let slirp4netns = find_program("slirp4netns").ok_or(
        "slirp4netns is not installed (apt-get install slirp4netns): each machine gets its own network through it",
    )?;
    let ip =
        find_program("ip").ok_or("iproute2's ip is not installed (apt-get install iproute2)")?;
    Ok(Tools { slirp4netns, ip })
}

fn error(message: &str, detail: impl std::fmt::Display) -> ProvisionError {
    ProvisionError {
        message: message.to_owned(),
        detail: detail.to_string(),
    }
}

fn internal(detail: impl std::fmt::Display) -> ProvisionError {
    error("The machine could not be set up on this host.", detail)
}

/// Creates a directory (and its parents) owned by the lease's root, with `mode`.
fn lease_owned_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    chown(path, Some(UID_BASE), Some(UID_BASE))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn lease_owned_file(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    std::fs::write(path, contents)?;
    chown(path, Some(UID_BASE), Some(UID_BASE))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn free_loopback_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What the host allows: root (to map the uid range and mount), overlayfs, user namespaces.
pub fn probe_host() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("the local provisioner needs the storefront to run as root (to map lease uids and mount overlays)".into());
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        return Some("the kernel has no overlay filesystem".into());
    }
    match std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        Ok(n) if n.trim() != "0" => None,
        _ => Some("user namespaces are disabled on this host".into()),
    }
}

/// The lease's root is an unprivileged host uid: it must be able to walk to the image and to its
/// own layer. The first directory on the way that others cannot enter, if any.
fn unreachable_ancestor(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let absolute = std::path::absolute(dir).ok()?;
    absolute
        .ancestors()
        .skip(1)
        .filter_map(|a| std::fs::metadata(a).ok().map(|m| (a.to_path_buf(), m)))
        .find(|(_, m)| m.mode() & 0o001 == 0)
        .map(|(a, _)| a)
}

impl LocalProvisioner {
    pub fn new(options: LocalOptions) -> Self {
        let data_dir = &options.data_dir;
        let image_dir = options.image_dir.unwrap_or_else(|| data_dir.join("images"));
        let leases = data_dir.join("leases");
        let tools = probe_tools();
        let unavailable = probe_host().or_else(|| tools.as_ref().err().cloned()).or_else(|| {
            [&image_dir, &leases].into_iter().find_map(|dir| {
                unreachable_ancestor(dir).map(|blocked| {
                    format!(
                        "{} is not reachable by the machines' unprivileged root because {} is closed to others; \
                         run `chmod o+x {}` or put data_dir and image_dir elsewhere",
                        dir.display(),
                        blocked.display(),
                        blocked.display()
                    )
                })
            })
        });
        match &unavailable {
            None => tracing::info!("local provisioner available"),
            Some(why) => tracing::warn!(reason = %why, "local provisioner unavailable"),
        }
        // Probing creates the storefront's lease cgroups, which takes root.
        let cgroups = if unavailable.is_none() {
            Cgroups::probe()
        } else {
            Cgroups::unavailable("local machines are unavailable")
        };
        Self {
            leases,
            images: ImageStore::new(image_dir),
            mirror: options.mirror,
            runner: options.runner,
            running: Mutex::new(HashMap::new()),
            unavailable,
            build_lock: Arc::new(Mutex::new(())),
            tools,
            cgroups,
            allow_private_egress: options.allow_private_egress,
        }
    }

    /// The destinations a lease may not reach: the host's own addresses always, the provider's
    /// networks unless the operator allows them. Read at each start, as addresses change.
    fn refused_destinations(&self) -> Vec<String> {
        let host_addresses = nix::ifaddrs::getifaddrs()
            .map(|addresses| {
                addresses
                    .filter_map(|a| a.address)
                    .filter_map(|a| {
                        a.as_sockaddr_in()
                            .map(|v4| std::net::IpAddr::V4(v4.ip()))
                            .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut blocked = egress::host_ranges(host_addresses);
        if !self.allow_private_egress {
            blocked.extend(egress::blocked_ranges());
        }
        // A kernel without IPv6 takes no IPv6 route; an address on two interfaces is one route.
        let ipv6 = Path::new("/proc/net/if_inet6").exists();
        let mut ranges: Vec<String> = blocked
            .into_iter()
            .filter(|r| ipv6 || r.net.addr().is_ipv4())
            .map(|r| r.net.to_string())
            .collect();
        ranges.sort();
        ranges.dedup();
        ranges
    }

    pub fn image_store(&self) -> &ImageStore {
        &self.images
    }

    fn dir(&self, id: &str) -> Result<PathBuf, ProvisionError> {
        // Ids come from the database, but a path is built from them: accept only id characters.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(internal(format!("refusing lease id {id:?}")));
        }
        Ok(self.leases.join(id))
    }

    fn read_record(&self, id: &str) -> Result<Option<LeaseRecord>, ProvisionError> {
        let path = self.dir(id)?.join("lease.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut record: LeaseRecord = serde_json::from_str(&text).map_err(internal)?;
                if record.host_public_key.is_empty() {
                    record.host_public_key = self.recorded_host_key(id, &record)?;
                    self.write_record(id, &record)?;
                }
                Ok(Some(record))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(internal(e)),
        }
    }

    /// The host public key of a lease recorded before keys were kept in `lease.json`: read from
    /// its layer, which the lease's root can write. So the file is read only if it is a small
    /// regular file (not a link, a FIFO or a device), and the key only believed if it has the
    /// fingerprint the storefront recorded when it made the key.
    fn recorded_host_key(&self, id: &str, record: &LeaseRecord) -> Result<String, ProvisionError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir(id)?.join("upper/etc/ssh/ssh_host_ed25519_key.pub");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&path)
            .map_err(internal)?;
        let meta = file.metadata().map_err(internal)?;
        if !meta.is_file() || meta.len() > 1024 {
            return Err(internal(format!(
                "{} is not a host key file",
                path.display()
            )));
        }
        let mut line = String::new();
        file.by_ref()
            .take(1024)
            .read_to_string(&mut line)
            .map_err(internal)?;
        let key = check_public_key(&line).map_err(internal)?;
        if fingerprint_of(&key) != record.host_key_fingerprint {
            return Err(internal(format!(
                "the host key in {} is not the one recorded",
                path.display()
            )));
        }
        Ok(without_comment(&key))
    }

    fn write_record(&self, id: &str, record: &LeaseRecord) -> Result<(), ProvisionError> {
        let path = self.dir(id)?.join("lease.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(record).expect("plain data"),
        )
        .map_err(internal)
    }

    async fn ensure_image(&self, image: &str) -> Result<PathBuf, ProvisionError> {
        if self.images.is_built(image) {
            return Ok(self.images.rootfs(image));
        }
        let _guard = self.build_lock.lock().await;
        self.images
            .build(image, self.mirror.as_deref(), |step| {
                tracing::info!(image, "building the machine image: {step}")
            })
            .await
            .map_err(|e| error("The machine image could not be prepared.", e))
    }

    /// Lays out a fresh copy-on-write layer: a new host key and the authorized key.
    fn fresh_layer(&self, id: &str, record: &mut LeaseRecord) -> Result<(), ProvisionError> {
        let dir = self.dir(id)?;
        for sub in ["upper", "work"] {
            let _ = std::fs::remove_dir_all(dir.join(sub));
        }
        let upper = dir.join("upper");
        lease_owned_dir(&upper, 0o755).map_err(internal)?;
        lease_owned_dir(&dir.join("work"), 0o700).map_err(internal)?;
        lease_owned_dir(&upper.join("etc"), 0o755).map_err(internal)?;
        lease_owned_dir(&upper.join("etc/ssh"), 0o755).map_err(internal)?;
        let host = generate_ed25519(&format!("root@{}", record.hostname));
        lease_owned_file(
            &upper.join("etc/ssh/ssh_host_ed25519_key"),
            &host.private_openssh,
            0o600,
        )
        .map_err(internal)?;
        lease_owned_file(
            &upper.join("etc/ssh/ssh_host_ed25519_key.pub"),
            &host.public_openssh,
            0o644,
        )
        .map_err(internal)?;
        lease_owned_dir(&upper.join("root"), 0o700).map_err(internal)?;
        lease_owned_dir(&upper.join("root/.ssh"), 0o700).map_err(internal)?;
        lease_owned_file(
            &upper.join("root/.ssh/authorized_keys"),
            &format!("{}\n", record.authorized_key),
            0o600,
        )
        .map_err(internal)?;
        lease_owned_file(
            &upper.join("etc/hostname"),
            &format!("{}\n", record.hostname),
            0o644,
        )
        .map_err(internal)?;
        // slirp4netns answers DNS on its own address, relaying to the host's resolver.
        lease_owned_file(
            &upper.join("etc/resolv.conf"),
            "nameserver 10.0.2.3\n",
            0o644,
        )
        .map_err(internal)?;
        record.host_key_fingerprint = host.fingerprint;
        record.host_public_key = host.public_key;
        Ok(())
    }

    async fn start(&self, id: &str, record: &mut LeaseRecord) -> Result<(), ProvisionError> {
        // Keep the port across restarts when it is still free. A runner that is ending (its
        // owner died) may hold it for a moment longer through slirp4netns. Waited for before
        // taking the lock, so other leases' starts and stops are not held up.
        let mut port_free = false;
        for _ in 0..20 {
            if std::net::TcpListener::bind(("127.0.0.1", record.port)).is_ok() {
                port_free = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut running = self.running.lock().await;
        if let Some(child) = running.get_mut(id) {
            if child.try_wait().map_err(internal)?.is_none() {
                return Ok(());
            }
            running.remove(id);
        }
        let dir = self.dir(id)?;
        lease_owned_dir(&dir.join("merged"), 0o755).map_err(internal)?;
        if !port_free || std::net::TcpListener::bind(("127.0.0.1", record.port)).is_err() {
            record.port = free_loopback_port().map_err(internal)?;
            self.write_record(id, record)?;
        }
        let tools = self.tools.as_ref().map_err(internal)?;
        // A unix socket's path is at most 108 bytes; a deep data directory gets a short one.
        let mut api_socket = dir.join("slirp.sock");
        if api_socket.as_os_str().len() > 100 {
            // A directory only root may write, so no one else can take the name first.
            let short = Path::new("/run/storefront-slirp");
            std::fs::create_dir_all(short)
                .and_then(|()| {
                    std::fs::set_permissions(short, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(internal)?;
            api_socket = short.join(format!("{id}.sock"));
        }
        let spec = LeaseSpec {
            image: self.images.rootfs(&record.image),
            dir: dir.clone(),
            hostname: record.hostname.clone(),
            port: record.port,
            network: LeaseNetwork {
                slirp4netns: tools.slirp4netns.clone(),
                ip: tools.ip.clone(),
                api_socket,
                blocked: self.refused_destinations(),
            },
            cgroups: record
                .size
                .map(|size| self.cgroups.settings(id, &size))
                .unwrap_or_default(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("console.log"))
            .map_err(internal)?;
        let child = tokio::process::Command::new(&self.runner)
            .arg("lease-run")
            .arg(serde_json::to_string(&spec).expect("plain data"))
            .stdin(std::process::Stdio::piped())
            .stdout(log.try_clone().map_err(internal)?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                internal(format!(
                    "cannot start the lease runner {}: {e}",
                    self.runner.display()
                ))
            })?;
        running.insert(id.to_owned(), child);
        Ok(())
    }

    async fn halt(&self, id: &str) {
        if let Some(mut child) = self.running.lock().await.remove(id) {
            // Closing the lifeline makes the runner kill the lease and exit once every process
            // of it is gone; a runner that does not is killed.
            drop(child.stdin.take());
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    fn machine(record: &LeaseRecord, private_key: Option<String>) -> Machine {
        Machine {
            host: "127.0.0.1".into(),
            port: record.port,
            username: "root".into(),
            image: record.image.clone(),
            host_key_fingerprint: record.host_key_fingerprint.clone(),
            host_public_key: record.host_public_key.clone(),
            private_key,
        }
    }
}

#[async_trait]
impl Provisioner for LocalProvisioner {
    fn unavailable_reason(&self) -> Option<String> {
        self.unavailable.clone()
    }

    fn isolation(&self) -> Vec<Isolation> {
        let mut report = vec![
            Isolation {
                name: "network",
                enforced: self.tools.is_ok(),
                detail: match &self.tools {
                    Ok(_) if self.allow_private_egress => "own network namespace through slirp4netns; the host's loopback and addresses refused; private egress ALLOWED by the operator".into(),
                    Ok(_) => "own network namespace through slirp4netns; the host's loopback and addresses, private, carrier-grade NAT and link-local ranges refused".into(),
                    Err(why) => why.clone(),
                },
            },
        ];
        for (name, state) in self.cgroups.report() {
            report.push(Isolation {
                name,
                enforced: state.is_ok(),
                detail: state.unwrap_or_else(|why| why),
            });
        }
        report.push(Isolation {
            name: "disk",
            enforced: false,
            detail: "a lease's files are a directory on the host's filesystem, without a quota"
                .into(),
        });
        report
    }

    fn images(&self) -> Vec<String> {
        // debian-12 is built on first need, so it is always deliverable.
        super::image::KNOWN_IMAGES
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect()
    }

    fn check_authorized_key(&self, key: &str) -> Result<(), String> {
        check_public_key(key).map(|_| ())
    }

    fn preparation_seconds(&self, image: &str) -> Option<(u64, u64)> {
        (self.unavailable.is_none() && !self.images.is_built(image))
            .then_some(super::image::TYPICAL_BUILD_SECONDS)
    }

    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        if let Some(why) = &self.unavailable {
            return Err(error("Local machines are not available on this host.", why));
        }
        self.ensure_image(&spec.image).await?;
        let dir = self.dir(&spec.id)?;
        let (mut record, private_key) = match self.read_record(&spec.id)? {
            Some(record) => (record, None),
            None => {
                std::fs::create_dir_all(&dir).map_err(internal)?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
                    .map_err(internal)?;
                let (authorized_key, private_key) = match &spec.authorized_key {
                    Some(key) => {
                        check_public_key(key)
                            .map_err(|e| error("The SSH public key was refused.", e))?;
                        (key.trim().to_owned(), None)
                    }
                    None => {
                        let pair = generate_ed25519(&format!("storefront-{}", spec.id));
                        (pair.public_openssh, Some(pair.private_openssh))
                    }
                };
                let mut record = LeaseRecord {
                    port: free_loopback_port().map_err(internal)?,
                    image: spec.image.clone(),
                    hostname: spec.hostname.clone(),
                    authorized_key,
                    host_key_fingerprint: String::new(),
                    host_public_key: String::new(),
                    size: spec.size,
                };
                self.fresh_layer(&spec.id, &mut record)?;
                self.write_record(&spec.id, &record)?;
                (record, private_key)
            }
        };
        self.start(&spec.id, &mut record).await?;
        Ok(Self::machine(&record, private_key))
    }

    async fn ready(&self, id: &str) -> Result<bool, ProvisionError> {
        let Some(record) = self.read_record(id)? else {
            return Ok(false);
        };
        Ok(
            super::keys::presents_host_key("127.0.0.1", record.port, &record.host_key_fingerprint)
                .await,
        )
    }

    async fn restart(&self, id: &str) -> Result<Machine, ProvisionError> {
        let mut record = self
            .read_record(id)?
            .ok_or_else(|| internal(format!("no lease {id}")))?;
        self.halt(id).await;
        self.start(id, &mut record).await?;
        Ok(Self::machine(&record, None))
    }

    async fn stop(&self, id: &str) -> Result<(), ProvisionError> {
        self.halt(id).await;
        Ok(())
    }

    async fn reinstall(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        self.ensure_image(&spec.image).await?;
        let mut record = self
            .read_record(&spec.id)?
            .ok_or_else(|| internal(format!("no lease {}", spec.id)))?;
        self.halt(&spec.id).await;
        record.image = spec.image.clone();
        self.fresh_layer(&spec.id, &mut record)?;
        self.write_record(&spec.id, &record)?;
        self.start(&spec.id, &mut record).await?;
        Ok(Self::machine(&record, None))
    }

    async fn terminate(&self, id: &str) -> Result<(), ProvisionError> {
        let dir = self.dir(id)?;
        self.halt(id).await;
        self.cgroups.remove(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(internal(e)),
        }
    }

    async fn list_owned(&self) -> Result<Vec<String>, ProvisionError> {
        let mut ids = Vec::new();
        match std::fs::read_dir(&self.leases) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    if entry.path().join("lease.json").exists() {
                        ids.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(internal(e)),
        }
        ids.sort();
        Ok(ids)
    }
}
