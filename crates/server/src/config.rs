//! Configuration: built-in defaults, then a TOML file (`--config`, `STOREFRONT_CONFIG`, or
//! `storefront.toml` in the working directory), then `STOREFRONT_*` environment variables, then
//! command-line flags. Documented in `docs/configuration.md`.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use storefront_providers::UpstreamConfig;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_key_rate() -> u32 {
    1200
}
fn default_public_rate() -> u32 {
    600
}
fn default_failed_auth_rate() -> u32 {
    60
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    30
}
fn default_readiness_timeout() -> u64 {
    2
}
fn default_api_key_cache() -> u64 {
    5
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_log() -> String {
    "info".into()
}
fn default_quote_ttl() -> u64 {
    15 * 60
}
fn default_idempotency_lock() -> u64 {
    120
}
fn default_job_lease() -> u64 {
    30
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the SQLite database (and later machine images) live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` (default: `storefront.db` in the data directory).
    #[serde(default)]
    pub database_url: Option<String>,
    /// Public URL used in signed URLs and discovery documents (default: `http://LISTEN`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Log filter (`info`, `storefront=debug,info`, ...).
    #[serde(default = "default_log")]
    pub log: String,
    #[serde(default)]
    pub log_format: LogFormat,
    /// The operator's catalog (TOML, format in `docs/catalog.md`); the built-in one otherwise.
    #[serde(default)]
    pub catalog_file: Option<PathBuf>,
    #[serde(default = "default_quote_ttl")]
    pub quote_ttl_seconds: u64,
    /// How long an unfinished idempotency claim blocks retries before it counts as abandoned.
    #[serde(default = "default_idempotency_lock")]
    pub idempotency_lock_seconds: u64,
    /// How long a worker holds a job without renewing it; a job whose worker died is taken over
    /// after this long.
    #[serde(default = "default_job_lease")]
    pub job_lease_seconds: u64,
    /// Requests a minute per API key (also the burst); 0 turns the limit off.
    #[serde(default = "default_key_rate")]
    pub rate_limit_per_minute: u32,
    /// Requests a minute per client address for calls without a key; 0 turns it off.
    #[serde(default = "default_public_rate")]
    pub public_rate_limit_per_minute: u32,
    /// A bearer token `/metrics` requires (`Authorization: Bearer ...`); without it `/metrics` is
    /// open to whoever reaches the listen address.
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// Failed authentications (unknown, revoked, malformed keys) a minute per client address;
    /// beyond it that address's keyed requests get `429` for a while. 0 turns it off.
    #[serde(default = "default_failed_auth_rate")]
    pub failed_auth_per_minute: u32,
    /// Open connections at most; beyond it new connections wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client gets to send a request's headers (slow clients are disconnected).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// Seconds a request may take, its body included, before it is answered with an error.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Seconds `/readyz` waits for its write-path check (a small durable write) before it
    /// answers `503`.
    #[serde(default = "default_readiness_timeout")]
    pub readiness_timeout_seconds: u64,
    /// Seconds an authenticated API key is remembered without a database read (0: never). A
    /// key revoked through another process (replica, `admin`) still works here this long.
    #[serde(default = "default_api_key_cache")]
    pub api_key_cache_seconds: u64,
    /// Outgoing webhooks.
    #[serde(default)]
    pub webhooks: WebhookConfig,
    /// Create a demo account with credits on the first start of an empty database.
    #[serde(default = "default_true")]
    pub demo_account: bool,
    /// Key for signed URLs (at least 32 characters). Default: generated once, kept in the database.
    #[serde(default)]
    pub signing_key: Option<String>,
    /// Earlier signing keys still accepted for verification after a rotation.
    #[serde(default)]
    pub previous_signing_keys: Vec<String>,
    /// Where machine images are built and cached (default: `images` in the data directory).
    #[serde(default)]
    pub image_dir: Option<PathBuf>,
    /// Debian archive for building images (default: the one the host's apt sources name).
    #[serde(default)]
    pub image_mirror: Option<String>,
    /// The `storefront` executable that runs leases (`lease-run`); default: this executable.
    #[serde(default)]
    pub lease_runner: Option<PathBuf>,
    /// Lets local machines reach private, carrier-grade NAT and link-local addresses (a lab
    /// network). Off by default: a machine sold to a stranger must not reach the provider's own
    /// network or a cloud metadata service. Environment:
    /// `STOREFRONT_MACHINES_ALLOW_PRIVATE_EGRESS=true`.
    #[serde(default)]
    pub machines_allow_private_egress: bool,
    /// Machines from an LXD or Incus engine, for `fulfiller = "lxd"` products (`[lxd]`;
    /// docs/machines.md). Environment: `STOREFRONT_LXD_SOCKET` sets the socket.
    #[serde(default)]
    pub lxd: Option<LxdConfig>,
    /// Key that seals machine credentials at rest: 32 bytes, base64. Default: generated on first
    /// start into `secrets.key` in the data directory. Every process on one database needs the
    /// same key.
    #[serde(default)]
    pub secrets_key: Option<String>,
    /// JSON APIs that fulfill instant products (`fulfiller = NAME` in the catalog).
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// Host names `/mcp` answers besides loopback and the host of `base_url` (DNS-rebinding
    /// protection). `STOREFRONT_MCP_ALLOWED_HOSTS`, comma-separated.
    #[serde(default)]
    pub mcp_allowed_hosts: Vec<String>,
    // Payments (docs/payments.md): card needs the secret key and the webhook secret; MPP needs
    // the secret key and mpp_secret.
    #[serde(default)]
    pub stripe_secret_key: Option<String>,
    #[serde(default)]
    pub stripe_webhook_secret: Option<String>,
    #[serde(default)]
    pub stripe_api_base: Option<String>,
    #[serde(default)]
    pub mpp_secret: Option<String>,
    #[serde(default)]
    pub mpp_network_id: Option<String>,
    #[serde(default)]
    pub mpp_realm: Option<String>,
}

/// The LXD/Incus engine behind `fulfiller = "lxd"` products (`[lxd]`; docs/machines.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LxdConfig {
    /// The daemon's unix socket (default `/var/lib/lxd/unix.socket`; Incus:
    /// `/var/lib/incus/unix.socket`). Ignored when `url` is set.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// `https://host:8443` of a remote host or cluster, reached with a client certificate.
    #[serde(default)]
    pub url: Option<String>,
    /// PEM files: this storefront's client certificate and key (trusted on the server with
    /// `lxc config trust add`), and the server's certificate when it is self-signed.
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    #[serde(default)]
    pub server_certificate: Option<PathBuf>,
    #[serde(default = "default_lxd_project")]
    pub project: String,
    /// `container` (default) or `virtual-machine`.
    #[serde(default = "default_lxd_instance_type")]
    pub instance_type: String,
    #[serde(default = "default_lxd_storage_pool")]
    pub storage_pool: String,
    /// Where each machine's SSH proxy listens on the engine's host (default 127.0.0.1).
    #[serde(default = "default_lxd_listen")]
    pub ssh_listen_address: String,
    /// The address agents are told to connect to (default: the host of `url`, else
    /// `ssh_listen_address`).
    #[serde(default)]
    pub ssh_host: Option<String>,
    /// Host ports for the SSH proxies, inclusive (default 20000-29999).
    #[serde(default = "default_lxd_port_min")]
    pub ssh_port_min: u16,
    #[serde(default = "default_lxd_port_max")]
    pub ssh_port_max: u16,
    /// Catalog image → LXD image alias, where they differ.
    #[serde(default)]
    pub images: std::collections::BTreeMap<String, String>,
    /// Catalog region → cluster member or `@group`.
    #[serde(default)]
    pub regions: std::collections::BTreeMap<String, String>,
    /// Snapshot schedule and expiry of machines bought with backups (default `@daily`, `7d`).
    #[serde(default = "default_lxd_backup_schedule")]
    pub backup_schedule: String,
    #[serde(default = "default_lxd_backup_expiry")]
    pub backup_expiry: String,
}

fn default_lxd_project() -> String {
    "default".into()
}
fn default_lxd_storage_pool() -> String {
    "default".into()
}
fn default_lxd_instance_type() -> String {
    "container".into()
}
fn default_lxd_listen() -> String {
    "127.0.0.1".into()
}
fn default_lxd_port_min() -> u16 {
    20_000
}
fn default_lxd_port_max() -> u16 {
    29_999
}
fn default_lxd_backup_schedule() -> String {
    "@daily".into()
}
fn default_lxd_backup_expiry() -> String {
    "7d".into()
}

impl Default for LxdConfig {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// Outgoing webhooks (`[webhooks]` in the TOML file; docs/events.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Lets webhooks reach loopback, private and link-local addresses and plain `http://` URLs
    /// (local setups and tests). Off by default: customer-chosen URLs must not reach the
    /// provider's own network. Environment: `STOREFRONT_WEBHOOK_ALLOW_PRIVATE=true`.
    #[serde(default)]
    pub allow_private_targets: bool,
    /// Seconds one delivery attempt may take, connecting included (1-60, default 10).
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u64,
}

fn default_webhook_timeout() -> u64 {
    10
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            timeout_seconds: default_webhook_timeout(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration in {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid {var}: {message}")]
    Env { var: String, message: String },
}

/// Command-line values that override everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

impl Config {
    /// Loads the configuration from the process environment and the working directory.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(overrides, |name| std::env::var(name).ok())
    }

    /// Loads with an explicit environment (tests).
    pub fn load_from(
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = overrides
            .config
            .clone()
            .or_else(|| env("STOREFRONT_CONFIG").map(PathBuf::from))
            .or_else(|| {
                Path::new("storefront.toml")
                    .exists()
                    .then(|| PathBuf::from("storefront.toml"))
            });
        let mut config = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str::<Config>(&text).map_err(|e| ConfigError::Parse {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        if let Some(v) = &overrides.listen {
            config.listen = v.clone();
        }
        if let Some(v) = &overrides.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = &overrides.database_url {
            config.database_url = Some(v.clone());
        }
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let number = |var: &str, raw: String| {
            raw.trim().parse::<u64>().map_err(|_| ConfigError::Env {
                var: var.to_owned(),
                message: format!("'{raw}' is not a whole number of seconds"),
            })
        };
        if let Some(v) = env("STOREFRONT_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = env("STOREFRONT_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("STOREFRONT_LOG") {
            self.log = v;
        }
        if let Some(v) = env("STOREFRONT_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(ConfigError::Env {
                        var: "STOREFRONT_LOG_FORMAT".into(),
                        message: format!("'{other}' is not 'text' or 'json'"),
                    })
                }
            };
        }
        if let Some(v) = env("STOREFRONT_IMAGE_DIR") {
            self.image_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = env("STOREFRONT_IMAGE_MIRROR") {
            self.image_mirror = Some(v);
        }
        if let Some(v) = env("STOREFRONT_CATALOG_FILE") {
            self.catalog_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env("STOREFRONT_QUOTE_TTL_SECONDS") {
            self.quote_ttl_seconds = number("STOREFRONT_QUOTE_TTL_SECONDS", v)?;
        }
        if let Some(v) = env("STOREFRONT_RATE_LIMIT_PER_MINUTE") {
            self.rate_limit_per_minute =
                number("STOREFRONT_RATE_LIMIT_PER_MINUTE", v)?.min(u64::from(u32::MAX)) as u32;
        }
        if let Some(v) = env("STOREFRONT_PUBLIC_RATE_LIMIT_PER_MINUTE") {
            self.public_rate_limit_per_minute =
                number("STOREFRONT_PUBLIC_RATE_LIMIT_PER_MINUTE", v)?.min(u64::from(u32::MAX))
                    as u32;
        }
        if let Some(v) = env("STOREFRONT_METRICS_TOKEN") {
            self.metrics_token = Some(v);
        }
        if let Some(v) = env("STOREFRONT_FAILED_AUTH_PER_MINUTE") {
            self.failed_auth_per_minute =
                number("STOREFRONT_FAILED_AUTH_PER_MINUTE", v)?.min(u64::from(u32::MAX)) as u32;
        }
        if let Some(v) = env("STOREFRONT_MAX_CONNECTIONS") {
            self.max_connections = number("STOREFRONT_MAX_CONNECTIONS", v)? as usize;
        }
        if let Some(v) = env("STOREFRONT_HEADER_READ_TIMEOUT_SECONDS") {
            self.header_read_timeout_seconds = number("STOREFRONT_HEADER_READ_TIMEOUT_SECONDS", v)?;
        }
        if let Some(v) = env("STOREFRONT_REQUEST_TIMEOUT_SECONDS") {
            self.request_timeout_seconds = number("STOREFRONT_REQUEST_TIMEOUT_SECONDS", v)?;
        }
        if let Some(v) = env("STOREFRONT_READINESS_TIMEOUT_SECONDS") {
            self.readiness_timeout_seconds = number("STOREFRONT_READINESS_TIMEOUT_SECONDS", v)?;
        }
        if let Some(v) = env("STOREFRONT_API_KEY_CACHE_SECONDS") {
            self.api_key_cache_seconds = number("STOREFRONT_API_KEY_CACHE_SECONDS", v)?;
        }
        if let Some(v) = env("STOREFRONT_JOB_LEASE_SECONDS") {
            self.job_lease_seconds = number("STOREFRONT_JOB_LEASE_SECONDS", v)?.max(1);
        }
        if let Some(v) = env("STOREFRONT_MACHINES_ALLOW_PRIVATE_EGRESS") {
            self.machines_allow_private_egress = matches!(v.as_str(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = env("STOREFRONT_LXD_SOCKET") {
            self.lxd.get_or_insert_with(LxdConfig::default).socket = Some(PathBuf::from(v));
        }
        if let Some(v) = env("STOREFRONT_WEBHOOK_ALLOW_PRIVATE") {
            self.webhooks.allow_private_targets = matches!(v.as_str(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = env("STOREFRONT_WEBHOOK_TIMEOUT_SECONDS") {
            self.webhooks.timeout_seconds = number("STOREFRONT_WEBHOOK_TIMEOUT_SECONDS", v)?;
        }
        if let Some(v) = env("STOREFRONT_DEMO_ACCOUNT") {
            self.demo_account = !matches!(v.as_str(), "0" | "false" | "no" | "off");
        }
        if let Some(v) = env("STOREFRONT_MCP_ALLOWED_HOSTS") {
            self.mcp_allowed_hosts = v
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect();
        }
        let strings: [(&str, &mut Option<String>); 10] = [
            ("STOREFRONT_DATABASE_URL", &mut self.database_url),
            ("STOREFRONT_BASE_URL", &mut self.base_url),
            ("STOREFRONT_SIGNING_KEY", &mut self.signing_key),
            ("STOREFRONT_SECRETS_KEY", &mut self.secrets_key),
            ("STOREFRONT_STRIPE_SECRET_KEY", &mut self.stripe_secret_key),
            (
                "STOREFRONT_STRIPE_WEBHOOK_SECRET",
                &mut self.stripe_webhook_secret,
            ),
            ("STOREFRONT_STRIPE_API_BASE", &mut self.stripe_api_base),
            ("STOREFRONT_MPP_SECRET", &mut self.mpp_secret),
            ("STOREFRONT_MPP_NETWORK_ID", &mut self.mpp_network_id),
            ("STOREFRONT_MPP_REALM", &mut self.mpp_realm),
        ];
        for (var, slot) in strings {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                *slot = Some(v);
            }
        }
        Ok(())
    }

    /// The database URL in effect: the configured one, or a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("storefront.db").display())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn precedence_is_defaults_then_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sf.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nquote_ttl_seconds = 60\nlog = \"debug\"\n",
        )
        .unwrap();
        let env: HashMap<&str, &str> = [
            ("STOREFRONT_LOG", "warn"),
            ("STOREFRONT_LISTEN", "127.0.0.1:9001"),
        ]
        .into();
        let overrides = Overrides {
            config: Some(file),
            listen: Some("127.0.0.1:9002".into()),
            ..Default::default()
        };
        let c = Config::load_from(&overrides, |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9002", "flag wins");
        assert_eq!(c.log, "warn", "environment beats the file");
        assert_eq!(c.quote_ttl_seconds, 60, "file beats the default");
        assert_eq!(c.data_dir, PathBuf::from("./data"), "default");
    }

    #[test]
    fn unknown_keys_and_bad_numbers_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sf.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let overrides = Overrides {
            config: Some(file),
            ..Default::default()
        };
        let err = Config::load_from(&overrides, |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = Config::load_from(&Overrides::default(), |k| {
            (k == "STOREFRONT_QUOTE_TTL_SECONDS").then(|| "soon".into())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("STOREFRONT_QUOTE_TTL_SECONDS"), "{err}");
    }
}
