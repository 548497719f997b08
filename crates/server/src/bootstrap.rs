//! Wiring: opens the store, loads the catalog, decides what is available, builds the `App`.

use crate::config::Config;
use std::collections::HashMap;
use std::sync::Arc;
use storefront_app::ports::{Fulfiller, Provisioner, Store};
use storefront_app::secrets::{random_token, SecretBox, UrlSigner};
use storefront_app::{App, AppSettings, Clock};
use storefront_domain::catalog::{Availability, Catalog, CatalogSpec, DEFAULT_CATALOG_TOML};
use storefront_providers::local::{LocalOptions, LocalProvisioner};
use storefront_providers::lxd::{Endpoint, LxdOptions, LxdProvisioner};
use storefront_providers::mpp::{MppConfig, StripeMpp};
use storefront_providers::stripe::StripeCard;
use storefront_providers::webhooks::HttpWebhookTransport;
use storefront_providers::{HttpUpstream, OfflineSearch};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] storefront_store::OpenError),
    #[error("the database failed while starting: {0}")]
    Database(String),
}

/// Opens the configured store (creating the data directory for the default SQLite file) and
/// applies its migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, BootError> {
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            BootError::Config(format!(
                "cannot create the data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
    }
    Ok(storefront_store::open(&config.database_url()).await?)
}

/// The catalog a configuration offers, validated, and where it came from (for logs and
/// `storefront catalog check`).
pub struct LoadedCatalog {
    pub catalog: Catalog,
    pub origin: String,
}

fn parse_catalog(text: &str, origin: &str) -> Result<CatalogSpec, BootError> {
    toml::from_str(text).map_err(|e| BootError::Config(format!("invalid catalog in {origin}: {e}")))
}

fn load_catalog_spec(config: &Config) -> Result<(CatalogSpec, String), BootError> {
    let builtin = || parse_catalog(DEFAULT_CATALOG_TOML, "the built-in catalog");
    match &config.catalog_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                BootError::Config(format!("cannot read the catalog {}: {e}", path.display()))
            })?;
            let spec = parse_catalog(&text, &path.display().to_string())?;
            let origin = if spec.include_builtin {
                format!("{} with the built-in products", path.display())
            } else {
                path.display().to_string()
            };
            Ok((spec.over(builtin()?), origin))
        }
        None => Ok((builtin()?, "the built-in catalog".to_owned())),
    }
}

/// The local provisioner of a configuration (its machines, images and runner).
pub fn local_provisioner(config: &Config) -> Result<Arc<LocalProvisioner>, BootError> {
    let runner = match &config.lease_runner {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| BootError::Config(format!("cannot find this executable: {e}")))?,
    };
    Ok(Arc::new(LocalProvisioner::new(LocalOptions {
        data_dir: config.data_dir.clone(),
        image_dir: config.image_dir.clone(),
        mirror: config.image_mirror.clone(),
        runner,
        allow_private_egress: config.machines_allow_private_egress,
    })))
}

/// The LXD/Incus provisioner of a configuration, connected, if `[lxd]` is set. An engine that
/// does not answer leaves it unavailable with the reason (its products are not sold).
pub async fn lxd_provisioner(config: &Config) -> Result<Option<Arc<LxdProvisioner>>, BootError> {
    let Some(lxd) = &config.lxd else {
        return Ok(None);
    };
    let read =
        |path: &Option<std::path::PathBuf>, what: &str| -> Result<Option<String>, BootError> {
            path.as_ref()
                .map(|p| {
                    std::fs::read_to_string(p).map_err(|e| {
                        BootError::Config(format!("lxd.{what}: cannot read {}: {e}", p.display()))
                    })
                })
                .transpose()
        };
    let endpoint = match &lxd.url {
        Some(url) => Endpoint::Https {
            url: url.clone(),
            client_certificate: read(&lxd.client_certificate, "client_certificate")?.ok_or_else(
                || {
                    BootError::Config(
                        "lxd.url needs lxd.client_certificate and lxd.client_key".into(),
                    )
                },
            )?,
            client_key: read(&lxd.client_key, "client_key")?.ok_or_else(|| {
                BootError::Config("lxd.url needs lxd.client_certificate and lxd.client_key".into())
            })?,
            server_certificate: read(&lxd.server_certificate, "server_certificate")?,
        },
        None => Endpoint::Unix(
            lxd.socket
                .clone()
                .unwrap_or_else(|| "/var/lib/lxd/unix.socket".into()),
        ),
    };
    if !matches!(lxd.instance_type.as_str(), "container" | "virtual-machine") {
        return Err(BootError::Config(format!(
            "lxd.instance_type must be \"container\" or \"virtual-machine\", not \"{}\"",
            lxd.instance_type
        )));
    }
    // These go into the API's paths and query strings as they are.
    let plain = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    for (what, value) in [
        ("project", &lxd.project),
        ("storage_pool", &lxd.storage_pool),
    ] {
        if !plain(value) {
            return Err(BootError::Config(format!(
                "lxd.{what} '{value}' must be a plain LXD name (letters, digits, '-', '_', '.')"
            )));
        }
    }
    if let Some((region, target)) = lxd
        .regions
        .iter()
        .find(|(_, t)| !plain(t.strip_prefix('@').unwrap_or(t)))
    {
        return Err(BootError::Config(format!(
            "lxd.regions.{region} = '{target}' must name a cluster member or '@group'"
        )));
    }
    if lxd.ssh_port_min == 0 || lxd.ssh_port_min > lxd.ssh_port_max {
        return Err(BootError::Config(
            "lxd.ssh_port_min must be at least 1 and at most lxd.ssh_port_max".into(),
        ));
    }
    let options = LxdOptions {
        endpoint,
        project: lxd.project.clone(),
        instance_type: lxd.instance_type.clone(),
        storage_pool: lxd.storage_pool.clone(),
        ssh_listen_address: lxd.ssh_listen_address.clone(),
        // A remote engine's proxies are reached at its own address.
        ssh_host: lxd.ssh_host.clone().unwrap_or_else(|| {
            lxd.url
                .as_deref()
                .and_then(|u| reqwest::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| lxd.ssh_listen_address.clone())
        }),
        ssh_ports: (lxd.ssh_port_min, lxd.ssh_port_max),
        images: lxd.images.clone(),
        regions: lxd.regions.clone(),
        backup_schedule: lxd.backup_schedule.clone(),
        backup_expiry: lxd.backup_expiry.clone(),
        key_secret: machine_key_secret(&secrets_key(config)?),
    };
    Ok(Some(Arc::new(LxdProvisioner::connect(options).await)))
}

/// A key for machine key pairs, derived from the secrets key so the sealing key itself is used
/// for nothing else.
fn machine_key_secret(secrets_key: &[u8; 32]) -> [u8; 32] {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"storefront machine keys\0");
    hash.update(secrets_key);
    hash.finalize().into()
}

/// The provisioners a configuration has, by the `fulfiller` name products use.
pub struct Provisioners {
    pub local: Arc<LocalProvisioner>,
    pub lxd: Option<Arc<LxdProvisioner>>,
}

impl Provisioners {
    pub async fn of(config: &Config) -> Result<Self, BootError> {
        Ok(Self {
            local: local_provisioner(config)?,
            lxd: lxd_provisioner(config).await?,
        })
    }
}

/// Loads and validates the configured catalog: its products, the images the machine engines
/// can run, and which products this configuration can deliver.
pub fn load_catalog(
    config: &Config,
    provisioners: &Provisioners,
) -> Result<LoadedCatalog, BootError> {
    let local = &provisioners.local;
    let (mut spec, origin) = load_catalog_spec(config)?;
    // An engine's products offer exactly the images it holds.
    let lxd_images = provisioners
        .lxd
        .as_ref()
        .map(|p| p.images())
        .unwrap_or_default();
    let mut lxd_missing_images: HashMap<String, Vec<String>> = HashMap::new();
    for product in spec.products.iter_mut().filter(|p| p.fulfiller == "lxd") {
        if let Some(field) = product.fields.iter_mut().find(|f| f.name == "image") {
            let (held, missing): (Vec<String>, Vec<String>) = field
                .values
                .iter()
                .cloned()
                .partition(|i| lxd_images.contains(i));
            if held.is_empty() {
                lxd_missing_images.insert(product.id.clone(), missing);
            } else {
                if field
                    .default
                    .as_ref()
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| !held.iter().any(|h| h == d))
                {
                    field.default = Some(serde_json::Value::String(held[0].clone()));
                }
                field.values = held;
            }
        }
    }
    let local_unavailable = local.unavailable_reason();
    // The catalog may not promise an image the local provisioner cannot deliver.
    let local_images = local.images();
    for product in spec.products.iter().filter(|p| p.fulfiller == "local") {
        let offered = product
            .fields
            .iter()
            .find(|f| f.name == "image")
            .map(|f| f.values.clone())
            .unwrap_or_default();
        if let Some(image) = offered.iter().find(|i| !local_images.contains(i)) {
            return Err(BootError::Config(format!(
                "catalog: product '{}' offers image '{image}', which local machines cannot run (they have: {})",
                product.id,
                local_images.join(", ")
            )));
        }
    }
    let upstreams: HashMap<String, _> = config
        .upstreams
        .iter()
        .map(|u| (u.name.clone(), u.clone()))
        .collect();
    let lxd_unavailable = provisioners.lxd.as_ref().map(|p| p.unavailable_reason());
    let availability = |p: &storefront_domain::catalog::ProductSpec| {
        if p.fulfiller == "lxd" {
            return match (&lxd_unavailable, lxd_missing_images.get(&p.id)) {
                (None, _) => Availability::Unavailable(
                    "no LXD engine is configured on this storefront ([lxd])".into(),
                ),
                (Some(Some(why)), _) => {
                    Availability::Unavailable(format!("the LXD engine is unavailable: {why}"))
                }
                (Some(None), Some(missing)) => Availability::Unavailable(format!(
                    "the LXD engine holds none of this product's images ({})",
                    missing.join(", ")
                )),
                (Some(None), None) => Availability::Available,
            };
        }
        if p.fulfiller == "local" {
            return match &local_unavailable {
                None => Availability::Available,
                Some(why) => {
                    Availability::Unavailable(format!("local machines are unavailable: {why}"))
                }
            };
        }
        let known = p.fulfiller == "offline-search" || upstreams.contains_key(&p.fulfiller);
        if known {
            Availability::Available
        } else {
            Availability::Unavailable(format!(
                "no '{}' provider is configured on this storefront",
                p.fulfiller
            ))
        }
    };
    let catalog = Catalog::build(spec, availability)
        .map_err(|e| BootError::Config(format!("{origin}: {e}")))?;
    Ok(LoadedCatalog { catalog, origin })
}

/// Builds the application over an opened store.
pub async fn build_app(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    base_url: String,
) -> Result<App, BootError> {
    let provisioners = Provisioners::of(config).await?;
    let LoadedCatalog { catalog, origin } = load_catalog(config, &provisioners)?;
    tracing::info!(
        source = %origin,
        products = catalog.products().len(),
        version = catalog.version(),
        "catalog loaded"
    );

    let mut fulfillers: HashMap<String, Arc<dyn Fulfiller>> = HashMap::new();
    fulfillers.insert(
        "offline-search".into(),
        Arc::new(OfflineSearch::new(&catalog)),
    );
    for upstream in &config.upstreams {
        let f = HttpUpstream::new(upstream.clone()).map_err(BootError::Config)?;
        fulfillers.insert(upstream.name.clone(), Arc::new(f));
    }

    let (signing_key, mut previous) = match &config.signing_key {
        Some(k) if k.len() >= 32 => (k.clone(), Vec::new()),
        Some(_) => {
            return Err(BootError::Config(
                "signing_key must be at least 32 characters".into(),
            ))
        }
        // Generated once and kept in the database, so every replica signs alike;
        // `storefront admin rotate-signing-key` replaces it and keeps the old one verifying.
        None => {
            let current = store
                .setting_or_init(
                    storefront_app::secrets::SIGNING_KEY_SETTING,
                    &random_token(),
                )
                .await
                .map_err(|e| BootError::Database(e.to_string()))?;
            let previous = store
                .setting_or_init(storefront_app::secrets::PREVIOUS_SIGNING_KEYS_SETTING, "[]")
                .await
                .map_err(|e| BootError::Database(e.to_string()))?;
            (
                current,
                serde_json::from_str::<Vec<String>>(&previous).unwrap_or_default(),
            )
        }
    };
    previous.extend(config.previous_signing_keys.iter().cloned());
    let signer = UrlSigner::new(
        signing_key.into_bytes(),
        previous.into_iter().map(String::into_bytes).collect(),
    );
    let settings = AppSettings {
        base_url: base_url.trim_end_matches('/').to_owned(),
        quote_ttl: chrono::Duration::seconds(config.quote_ttl_seconds.clamp(1, 86_400 * 30) as i64),
        idempotency_lock_timeout: chrono::Duration::seconds(
            config.idempotency_lock_seconds.clamp(1, 86_400) as i64,
        ),
        mcp_allowed_hosts: config.mcp_allowed_hosts.clone(),
        base_url_configured: config.base_url.is_some(),
        rate_limit_per_minute: config.rate_limit_per_minute,
        public_rate_limit_per_minute: config.public_rate_limit_per_minute,
        failed_auth_per_minute: config.failed_auth_per_minute,
        max_connections: config.max_connections.max(1),
        header_read_timeout: std::time::Duration::from_secs(
            config.header_read_timeout_seconds.clamp(1, 3600),
        ),
        request_timeout: std::time::Duration::from_secs(
            config.request_timeout_seconds.clamp(1, 3600),
        ),
        readiness_timeout: std::time::Duration::from_secs(
            config.readiness_timeout_seconds.clamp(1, 60),
        ),
        api_key_cache_ttl: chrono::Duration::seconds(config.api_key_cache_seconds.min(3600) as i64),
        metrics_token_hash: config
            .metrics_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(storefront_app::secrets::hash_secret),
        ..AppSettings::default()
    };
    let secret_box = SecretBox::new(&secrets_key(config)?);
    let realm = config.mpp_realm.clone().unwrap_or_else(|| {
        settings
            .base_url
            .split("://")
            .nth(1)
            .unwrap_or(&settings.base_url)
            .to_owned()
    });
    let currency = settings.account_currency.clone();
    let mut app = App::new(store, catalog, clock, fulfillers, signer, settings)
        .with_provisioner("local", provisioners.local)
        .with_secret_box(secret_box);
    if let Some(lxd) = provisioners.lxd {
        app = app.with_provisioner("lxd", lxd);
    }
    let webhooks = HttpWebhookTransport::new(
        config.webhooks.allow_private_targets,
        std::time::Duration::from_secs(config.webhooks.timeout_seconds.clamp(1, 60)),
    )
    .map_err(BootError::Config)?;
    if config.webhooks.allow_private_targets {
        tracing::warn!("webhooks may reach private addresses and plain http:// URLs (webhooks.allow_private_targets)");
    }
    app = app.with_webhook_transport(Arc::new(webhooks));
    let stripe_base = config
        .stripe_api_base
        .clone()
        .unwrap_or_else(|| storefront_providers::stripe::DEFAULT_API_BASE.to_owned());
    if let Some(secret_key) = &config.stripe_secret_key {
        match &config.stripe_webhook_secret {
            Some(webhook_secret) => {
                app = app.with_card_gateway(Arc::new(StripeCard::new(
                    &stripe_base,
                    secret_key,
                    webhook_secret,
                )));
            }
            None => tracing::warn!(
                "stripe_secret_key is set but stripe_webhook_secret is not: card payments stay off"
            ),
        }
        if let Some(hmac_secret) = &config.mpp_secret {
            if hmac_secret.len() < 32 {
                return Err(BootError::Config(
                    "mpp_secret must be at least 32 characters".into(),
                ));
            }
            let mpp = StripeMpp::new(MppConfig {
                stripe_api_base: &stripe_base,
                stripe_secret_key: secret_key,
                network_id: config.mpp_network_id.as_deref().unwrap_or("internal"),
                hmac_secret,
                realm: &realm,
                currency: &currency,
            })
            .map_err(|e| BootError::Config(format!("MPP: {e}")))?;
            app = app.with_mpp_gateway(Arc::new(mpp));
        }
    } else if config.mpp_secret.is_some() {
        tracing::warn!("mpp_secret is set but stripe_secret_key is not: MPP payments stay off");
    }
    Ok(app)
}

/// The key that seals credentials at rest: from the configuration, or generated once into
/// `secrets.key` (mode 0600) in the data directory.
fn secrets_key(config: &Config) -> Result<[u8; 32], BootError> {
    use base64::Engine;
    let decode = |raw: &str| -> Result<[u8; 32], BootError> {
        base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| BootError::Config("secrets_key must be 32 bytes, base64-encoded".into()))
    };
    if let Some(raw) = &config.secrets_key {
        return decode(raw);
    }
    let path = config.data_dir.join("secrets.key");
    match std::fs::read_to_string(&path) {
        Ok(raw) => decode(&raw),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| BootError::Config(e.to_string()))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| BootError::Config(format!("cannot create {}: {e}", path.display())))?;
            file.write_all(
                base64::engine::general_purpose::STANDARD
                    .encode(key)
                    .as_bytes(),
            )
            .map_err(|e| BootError::Config(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(BootError::Config(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}
