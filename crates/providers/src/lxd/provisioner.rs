//! `LxdProvisioner`: one instance per service, named `sf-<service id>`.
//!
//! Instance config keys the storefront owns (`user.storefront.*`): `service_id` (the tag that
//! reconciliation and retried jobs find instances by), `image` (the catalog's image name),
//! `ssh_port` (the host port of its `ssh` proxy device), `host_public_key` (the host key it was
//! given), `authorized_key` (the key root accepts) and `keys_installed` (set once the keys are in
//! the instance, before its first start).

use super::client::{Body, Endpoint, LxdClient, LxdError};
use crate::local::keys::{check_public_key, ed25519_from_seed, presents_host_key};
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::collections::BTreeMap;
use storefront_app::ports::{Backup, Isolation, Machine, MachineSpec, ProvisionError, Provisioner};

const TAG: &str = "user.storefront.service_id";
const IMAGE: &str = "user.storefront.image";
const SSH_PORT: &str = "user.storefront.ssh_port";
const HOST_KEY: &str = "user.storefront.host_public_key";
const AUTHORIZED_KEY: &str = "user.storefront.authorized_key";
const KEYS_INSTALLED: &str = "user.storefront.keys_installed";

/// How the operator set up the LXD provisioner (`[lxd]` in the configuration).
#[derive(Debug, Clone)]
pub struct LxdOptions {
    pub endpoint: Endpoint,
    pub project: String,
    /// `container` or `virtual-machine`.
    pub instance_type: String,
    /// The storage pool of each instance's root disk (sized from the product).
    pub storage_pool: String,
    /// Where each instance's `ssh` proxy device listens, on the LXD host.
    pub ssh_listen_address: String,
    /// The address clients connect to (the LXD host's address as they reach it).
    pub ssh_host: String,
    /// Host ports the proxy devices take, inclusive.
    pub ssh_ports: (u16, u16),
    /// Catalog image name → LXD image alias (an image without an entry uses its own name).
    pub images: BTreeMap<String, String>,
    /// Catalog region → cluster member or `@group` (`target`); unmapped regions let LXD choose.
    pub regions: BTreeMap<String, String>,
    /// `snapshots.schedule` and `snapshots.expiry` of machines bought with backups.
    pub backup_schedule: String,
    pub backup_expiry: String,
    /// Derives the key pair of a machine whose order brought no key, so a retried job hands over
    /// the same key (the storefront's secrets key; every worker has the same).
    pub key_secret: [u8; 32],
}

pub struct LxdProvisioner {
    client: LxdClient,
    options: LxdOptions,
    /// Catalog image names the engine holds an alias for, read at start.
    images: Vec<String>,
    unavailable: Option<String>,
    /// The root pool's driver (whether root disk sizes are enforced depends on it).
    pool_driver: Option<String>,
    /// The network devices the default profile gives every instance (`eth0 → lxdbr0`).
    profile_networks: Option<Vec<String>>,
}

fn failed(message: &str, detail: impl std::fmt::Display) -> ProvisionError {
    ProvisionError {
        message: message.to_owned(),
        detail: detail.to_string(),
    }
}

fn engine(e: LxdError) -> ProvisionError {
    failed("The machine engine refused or failed the request.", e)
}

/// `svc_01ab...` → `sf-svc-01ab...`: LXD names are host names (letters, digits, hyphens).
fn instance_name(service_id: &str) -> Result<String, ProvisionError> {
    if service_id.is_empty()
        || service_id.len() > 59
        || !service_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(failed(
            "The machine could not be set up.",
            format!("refusing service id {service_id:?}"),
        ));
    }
    Ok(format!(
        "sf-{}",
        service_id.replace('_', "-").to_ascii_lowercase()
    ))
}

fn config_str<'a>(instance: &'a Value, key: &str) -> Option<&'a str> {
    instance["config"][key].as_str()
}

impl LxdProvisioner {
    /// Connects and reads what the engine offers; an engine that does not answer leaves the
    /// provisioner unavailable with the reason (its products are listed as unavailable).
    pub async fn connect(options: LxdOptions) -> Self {
        let client = match LxdClient::new(&options.endpoint, &options.project) {
            Ok(client) => client,
            Err(why) => {
                return Self {
                    client: LxdClient::new(&Endpoint::Unix("/nonexistent".into()), "default")
                        .expect("a unix endpoint needs no setup"),
                    options,
                    images: Vec::new(),
                    unavailable: Some(why),
                    pool_driver: None,
                    profile_networks: None,
                }
            }
        };
        let mut provisioner = Self {
            client,
            options,
            images: Vec::new(),
            unavailable: None,
            pool_driver: None,
            profile_networks: None,
        };
        match provisioner.probe().await {
            Ok(()) => tracing::info!(images = ?provisioner.images, "LXD provisioner available"),
            Err(why) => {
                tracing::warn!(reason = %why, "LXD provisioner unavailable");
                provisioner.unavailable = Some(why);
            }
        }
        provisioner
    }

    async fn probe(&mut self) -> Result<(), String> {
        let server = self.client.get("/1.0").await.map_err(|e| e.to_string())?;
        if server["auth"] != "trusted" {
            return Err("the LXD server does not trust this client (add its certificate with `lxc config trust add`)".into());
        }
        let aliases = self
            .client
            .get("/1.0/images/aliases?recursion=1")
            .await
            .map_err(|e| e.to_string())?;
        let held: Vec<&str> = aliases
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["name"].as_str())
            .collect();
        // Catalog names the operator mapped, and aliases offered under their own name.
        let mut images: Vec<String> = held.iter().map(|a| (*a).to_owned()).collect();
        for (name, alias) in &self.options.images {
            if held.contains(&alias.as_str()) {
                images.push(name.clone());
            }
        }
        images.sort();
        images.dedup();
        self.images = images;
        self.pool_driver = self
            .client
            .get(&format!("/1.0/storage-pools/{}", self.options.storage_pool))
            .await
            .map_err(|e| format!("storage pool '{}': {e}", self.options.storage_pool))?["driver"]
            .as_str()
            .map(str::to_owned);
        let profile = self
            .client
            .get("/1.0/profiles/default")
            .await
            .map_err(|e| format!("the default profile: {e}"))?;
        self.profile_networks = Some(
            profile["devices"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, d)| d["type"] == "nic")
                .map(|(name, d)| {
                    let to = d["network"]
                        .as_str()
                        .or(d["parent"].as_str())
                        .unwrap_or("?");
                    format!("{name} → {to}")
                })
                .collect(),
        );
        Ok(())
    }

    fn alias_of<'a>(&'a self, image: &'a str) -> &'a str {
        self.options.images.get(image).map_or(image, String::as_str)
    }

    /// The instance of a service, if the engine has it.
    async fn instance(&self, name: &str) -> Result<Option<Value>, ProvisionError> {
        match self.client.get(&format!("/1.0/instances/{name}")).await {
            Ok(instance) => Ok(Some(instance)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    /// The instance `name`, which must exist.
    async fn existing(&self, name: &str) -> Result<Value, ProvisionError> {
        self.instance(name)
            .await?
            .ok_or_else(|| failed("The machine is gone.", format!("no instance {name}")))
    }

    /// The key root accepts, and the private half when the storefront made the pair: derived
    /// from the secret and the service id, so every attempt for a service makes the same pair.
    fn authorized_key(
        &self,
        spec: &MachineSpec,
    ) -> Result<(String, Option<String>), ProvisionError> {
        if let Some(key) = &spec.authorized_key {
            check_public_key(key).map_err(|e| failed("The SSH public key was refused.", e))?;
            return Ok((key.trim().to_owned(), None));
        }
        let seed = self.seed("storefront machine key", &[&spec.id]);
        let pair = ed25519_from_seed(&seed, &format!("storefront-{}", spec.id));
        Ok((pair.public_openssh, Some(pair.private_openssh)))
    }

    /// Host ports the storefront's proxy devices already use.
    async fn ports_in_use(&self) -> Result<Vec<u16>, ProvisionError> {
        let instances = self
            .client
            .get("/1.0/instances?recursion=1")
            .await
            .map_err(engine)?;
        Ok(instances
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| config_str(i, SSH_PORT)?.parse().ok())
            .collect())
    }

    /// A free port of the range: not used by another instance and, when the proxies listen on
    /// this host, bindable here.
    async fn free_port(&self, avoid: &[u16]) -> Result<u16, ProvisionError> {
        let used = self.ports_in_use().await?;
        let (low, high) = self.options.ssh_ports;
        let local = matches!(self.options.endpoint, Endpoint::Unix(_));
        // Start at a random place of the range, so concurrent workers rarely pick alike.
        let span = u32::from(high - low) + 1;
        let offset = rand::random::<u32>() % span;
        (0..span)
            .map(|i| low + ((offset + i) % span) as u16)
            .find(|port| {
                !used.contains(port)
                    && !avoid.contains(port)
                    && (!local
                        || std::net::TcpListener::bind((
                            self.options.ssh_listen_address.as_str(),
                            *port,
                        ))
                        .is_ok())
            })
            .ok_or_else(|| {
                failed(
                    "No SSH port is free on the machine engine.",
                    format!("every port of {low}-{high} is taken"),
                )
            })
    }

    fn proxy_device(&self, port: u16) -> Value {
        json!({
            "type": "proxy",
            "listen": format!("tcp:{}:{port}", self.options.ssh_listen_address),
            "connect": "tcp:127.0.0.1:22",
            "bind": "host",
        })
    }

    /// Creates the instance (stopped) with the product's limits, the tags and the SSH proxy.
    async fn create_instance(
        &self,
        name: &str,
        spec: &MachineSpec,
        port: u16,
        authorized_key: &str,
    ) -> Result<(), ProvisionError> {
        let mut config = Map::new();
        let mut set = |key: &str, value: String| {
            config.insert(key.to_owned(), Value::String(value));
        };
        set(TAG, spec.id.clone());
        // Whatever the profile says: an unprivileged container with ids of its own, so a root
        // that escapes it is nobody on the host and nobody in another tenant's machine.
        if self.options.instance_type == "container" {
            set("security.privileged", "false".to_owned());
            set("security.idmap.isolated", "true".to_owned());
        }
        set(IMAGE, spec.image.clone());
        set(SSH_PORT, port.to_string());
        set(AUTHORIZED_KEY, authorized_key.to_owned());
        let mut root = json!({"type": "disk", "path": "/", "pool": self.options.storage_pool});
        if let Some(size) = &spec.size {
            set("limits.cpu", size.vcpus.to_string());
            set("limits.memory", format!("{}MiB", size.memory_mib));
            // A process limit exists for containers only (a VM runs its own kernel).
            if self.options.instance_type == "container" {
                set("limits.processes", size.max_processes.to_string());
            }
            root["size"] = json!(format!("{}GiB", size.disk_gib));
        }
        if spec.backups {
            set("snapshots.schedule", self.options.backup_schedule.clone());
            set("snapshots.expiry", self.options.backup_expiry.clone());
            set("snapshots.pattern", "backup-%d".to_owned());
        }
        let body = json!({
            "name": name,
            "type": self.options.instance_type,
            "source": {"type": "image", "alias": self.alias_of(&spec.image)},
            "profiles": ["default"],
            "config": config,
            "devices": {"root": root, "ssh": self.proxy_device(port)},
        });
        let path = match spec
            .region
            .as_deref()
            .and_then(|r| self.options.regions.get(r))
        {
            Some(target) => format!("/1.0/instances?target={target}"),
            None => "/1.0/instances".to_owned(),
        };
        self.client
            .act("POST", &path, Body::Json(&body))
            .await
            .map(|_| ())
            .map_err(engine)
    }

    /// Writes a file (`Some(contents)`) or makes a directory (`None`) owned by root in the
    /// instance, with `mode`.
    async fn push(
        &self,
        name: &str,
        path: &str,
        contents: Option<&str>,
        mode: &str,
    ) -> Result<(), ProvisionError> {
        let kind = if contents.is_some() {
            "file"
        } else {
            "directory"
        };
        let headers = [
            ("x-lxd-type", kind.to_owned()),
            ("x-lxd-uid", "0".to_owned()),
            ("x-lxd-gid", "0".to_owned()),
            ("x-lxd-mode", mode.to_owned()),
            ("x-lxd-write", "overwrite".to_owned()),
        ];
        let sent = self
            .client
            .call(
                "POST",
                &format!("/1.0/instances/{name}/files?path={path}"),
                Body::File {
                    contents: contents.unwrap_or_default().as_bytes(),
                    headers: &headers,
                },
            )
            .await;
        match sent {
            Ok(_) => Ok(()),
            // A directory made by an earlier attempt.
            Err(e) if contents.is_none() && e.message.contains("exists") => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// A seed for the key `purpose` of a service, from the secret: the same inputs give the same
    /// key, so every attempt (and every worker) for one service makes the same pair.
    fn seed(&self, purpose: &str, parts: &[&str]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.options.key_secret)
            .expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        for part in parts {
            mac.update(b"\0");
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    /// Gives a never-started instance its host key and root's authorized key, then marks it. The
    /// host key derives from the instance's own uuid (new with each reinstall), so two attempts
    /// racing here install the same key; a crash before the mark makes the next attempt do this
    /// again.
    async fn install_keys(
        &self,
        name: &str,
        instance: &Value,
        authorized_key: &str,
    ) -> Result<(), ProvisionError> {
        let uuid = config_str(instance, "volatile.uuid").unwrap_or(name);
        let host = ed25519_from_seed(
            &self.seed("storefront machine host key", &[name, uuid]),
            &format!("root@{name}"),
        );
        self.push(
            name,
            "/etc/ssh/ssh_host_ed25519_key",
            Some(&host.private_openssh),
            "0600",
        )
        .await?;
        self.push(
            name,
            "/etc/ssh/ssh_host_ed25519_key.pub",
            Some(&host.public_openssh),
            "0644",
        )
        .await?;
        self.push(name, "/root/.ssh", None, "0700").await?;
        self.push(
            name,
            "/root/.ssh/authorized_keys",
            Some(&format!("{authorized_key}\n")),
            "0600",
        )
        .await?;
        self.patch(
            name,
            &json!({"config": {HOST_KEY: host.public_key, AUTHORIZED_KEY: authorized_key, KEYS_INSTALLED: "true"}}),
        )
        .await
    }

    /// Merges `changes` (config keys, devices) into an instance.
    async fn patch(&self, name: &str, changes: &Value) -> Result<(), ProvisionError> {
        self.client
            .call(
                "PATCH",
                &format!("/1.0/instances/{name}"),
                Body::Json(changes),
            )
            .await
            .map(|_| ())
            .map_err(engine)
    }

    async fn set_state(&self, name: &str, action: &str) -> Result<(), ProvisionError> {
        let body = json!({"action": action, "timeout": 30, "force": true});
        self.client
            .act(
                "PUT",
                &format!("/1.0/instances/{name}/state"),
                Body::Json(&body),
            )
            .await
            .map(|_| ())
            .map_err(engine)
    }

    /// Starts the instance; a proxy port another process took in the meantime is replaced.
    async fn start(&self, name: &str) -> Result<(), ProvisionError> {
        let mut tried = Vec::new();
        loop {
            match self.set_state(name, "start").await {
                Err(e) if e.detail.contains("address already in use") && tried.len() < 3 => {
                    let instance = self.existing(name).await?;
                    tried.extend(
                        config_str(&instance, SSH_PORT).and_then(|p| p.parse::<u16>().ok()),
                    );
                    let port = self.free_port(&tried).await?;
                    let moved = json!({
                        "config": {SSH_PORT: port.to_string()},
                        "devices": {"ssh": self.proxy_device(port)},
                    });
                    self.patch(name, &moved).await?;
                }
                other => return other,
            }
        }
    }

    fn machine(
        &self,
        instance: &Value,
        private_key: Option<String>,
    ) -> Result<Machine, ProvisionError> {
        let missing =
            |what: &str| failed("The machine's record on the engine is incomplete.", what);
        let host_public_key = config_str(instance, HOST_KEY).ok_or_else(|| missing(HOST_KEY))?;
        let key = check_public_key(host_public_key).map_err(|e| missing(&e))?;
        Ok(Machine {
            host: self.options.ssh_host.clone(),
            port: config_str(instance, SSH_PORT)
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| missing(SSH_PORT))?,
            username: "root".into(),
            image: config_str(instance, IMAGE).unwrap_or_default().to_owned(),
            host_key_fingerprint: crate::local::keys::fingerprint_of(&key),
            host_public_key: host_public_key.to_owned(),
            private_key,
        })
    }

    /// Creates (or, after a crash, adopts) the instance of `spec`, keyed and running.
    async fn bring_up(
        &self,
        spec: &MachineSpec,
        port: Option<u16>,
    ) -> Result<Machine, ProvisionError> {
        let name = instance_name(&spec.id)?;
        let (authorized_key, private_key) = self.authorized_key(spec)?;
        let instance = match self.instance(&name).await? {
            Some(instance) => instance,
            None => {
                let port = match port {
                    Some(port) => port,
                    None => self.free_port(&[]).await?,
                };
                // The keys go in by `install_keys`, before the first start.
                match self
                    .create_instance(&name, spec, port, &authorized_key)
                    .await
                {
                    Ok(()) => {}
                    // Another worker created it at the same moment: adopt theirs.
                    Err(e) if e.detail.contains("already exists") => {}
                    Err(e) => return Err(e),
                }
                self.existing(&name).await?
            }
        };
        if config_str(&instance, TAG) != Some(spec.id.as_str()) {
            return Err(failed(
                "The machine could not be set up.",
                format!(
                    "instance {name} exists but is not tagged for service {}",
                    spec.id
                ),
            ));
        }
        if config_str(&instance, KEYS_INSTALLED) != Some("true") {
            self.install_keys(&name, &instance, &authorized_key).await?;
        }
        if self.existing(&name).await?["status"] != "Running" {
            self.start(&name).await?;
        }
        let instance = self.existing(&name).await?;
        self.machine(&instance, private_key)
    }

    /// Stops (forcefully) and deletes an instance; an absent one is fine.
    async fn remove(&self, name: &str) -> Result<(), ProvisionError> {
        let Some(instance) = self.instance(name).await? else {
            return Ok(());
        };
        // Running, frozen or in between: an instance is deleted only once stopped.
        if instance["status"] != "Stopped" {
            self.set_state(name, "stop").await?;
        }
        match self
            .client
            .act("DELETE", &format!("/1.0/instances/{name}"), Body::Empty)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }
}

#[async_trait]
impl Provisioner for LxdProvisioner {
    fn unavailable_reason(&self) -> Option<String> {
        self.unavailable.clone()
    }

    fn isolation(&self) -> Vec<Isolation> {
        let disk_enforced = matches!(
            self.pool_driver.as_deref(),
            Some("btrfs" | "zfs" | "lvm" | "ceph")
        );
        vec![
            match &self.profile_networks {
                Some(networks) if networks.is_empty() => Isolation {
                    name: "network",
                    enforced: true,
                    detail: "no network device in the default profile: a machine reaches nothing (no internet either) and is reached only through its SSH proxy".into(),
                },
                Some(networks) => Isolation {
                    name: "network",
                    enforced: false,
                    detail: format!(
                        "the default profile gives machines a network ({}): what they reach is that network's to fence (an LXD network ACL refusing the host, private and link-local ranges)",
                        networks.join(", ")
                    ),
                },
                None => Isolation {
                    name: "network",
                    enforced: false,
                    detail: "the default profile could not be read".into(),
                },
            },
            Isolation {
                name: "memory",
                enforced: true,
                detail: "LXD limits.memory".into(),
            },
            Isolation {
                name: "cpu",
                enforced: true,
                detail: "LXD limits.cpu".into(),
            },
            Isolation {
                name: "processes",
                enforced: true,
                detail: "LXD limits.processes".into(),
            },
            Isolation {
                name: "disk",
                enforced: disk_enforced,
                detail: match &self.pool_driver {
                    Some(driver) if disk_enforced => format!("root disk size on a '{driver}' pool"),
                    Some(driver) => format!("a '{driver}' pool does not enforce root disk sizes (btrfs, zfs, lvm and ceph pools do)"),
                    None => "unknown storage pool".into(),
                },
            },
        ]
    }

    fn images(&self) -> Vec<String> {
        self.images.clone()
    }

    fn check_authorized_key(&self, key: &str) -> Result<(), String> {
        check_public_key(key).map(|_| ())
    }

    fn preparation_seconds(&self, _image: &str) -> Option<(u64, u64)> {
        None
    }

    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        if let Some(why) = &self.unavailable {
            return Err(failed("The machine engine is not available.", why));
        }
        self.bring_up(spec, None).await
    }

    async fn ready(&self, id: &str) -> Result<bool, ProvisionError> {
        let Some(instance) = self.instance(&instance_name(id)?).await? else {
            return Ok(false);
        };
        if instance["status"] != "Running" || config_str(&instance, KEYS_INSTALLED) != Some("true")
        {
            return Ok(false);
        }
        let machine = self.machine(&instance, None)?;
        // Where clients connect is where the storefront checks from.
        Ok(presents_host_key(
            &self.options.ssh_host,
            machine.port,
            &machine.host_key_fingerprint,
        )
        .await)
    }

    async fn restart(&self, id: &str) -> Result<Machine, ProvisionError> {
        let name = instance_name(id)?;
        if self.existing(&name).await?["status"] == "Running" {
            self.set_state(&name, "restart").await?;
        } else {
            self.start(&name).await?;
        }
        self.machine(&self.existing(&name).await?, None)
    }

    async fn stop(&self, id: &str) -> Result<(), ProvisionError> {
        let name = instance_name(id)?;
        match self.instance(&name).await? {
            Some(instance) if instance["status"] == "Running" => {
                self.set_state(&name, "stop").await
            }
            _ => Ok(()),
        }
    }

    /// LXD 5.0 has no rebuild: the instance is deleted and created again from the image under
    /// the same name and SSH port, with a new host key.
    async fn reinstall(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        let name = instance_name(&spec.id)?;
        let port = match self.instance(&name).await? {
            Some(instance) => {
                let port = config_str(&instance, SSH_PORT).and_then(|p| p.parse().ok());
                self.remove(&name).await?;
                port
            }
            // A retried reinstall whose delete went through: the port is chosen again.
            None => None,
        };
        self.bring_up(spec, port).await
    }

    async fn terminate(&self, id: &str) -> Result<(), ProvisionError> {
        self.remove(&instance_name(id)?).await
    }

    async fn list_owned(&self) -> Result<Vec<String>, ProvisionError> {
        if self.unavailable.is_some() {
            return Ok(Vec::new());
        }
        let instances = self
            .client
            .get("/1.0/instances?recursion=1")
            .await
            .map_err(engine)?;
        let mut ids: Vec<String> = instances
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| config_str(i, TAG).map(str::to_owned))
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn backups(&self, id: &str) -> Result<Vec<Backup>, ProvisionError> {
        let name = instance_name(id)?;
        let snapshots = match self
            .client
            .get(&format!("/1.0/instances/{name}/snapshots?recursion=1"))
            .await
        {
            Ok(snapshots) => snapshots,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(engine(e)),
        };
        let mut backups: Vec<Backup> = snapshots
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Backup {
                name: s["name"].as_str().unwrap_or_default().to_owned(),
                created_at: s["created_at"].as_str().unwrap_or_default().to_owned(),
                expires_at: s["expires_at"]
                    .as_str()
                    // LXD writes the zero time for a snapshot that never expires.
                    .filter(|t| !t.starts_with("0001-"))
                    .map(str::to_owned),
            })
            .collect();
        backups.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(backups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_host_names_and_ids_are_checked() {
        assert_eq!(instance_name("svc_01AbC").unwrap(), "sf-svc-01abc");
        assert!(instance_name("../etc").is_err());
        assert!(instance_name("").is_err());
    }
}
