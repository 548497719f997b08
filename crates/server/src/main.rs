//! `storefront`: serve the API, migrate the database, administer accounts.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// mimalloc instead of glibc's malloc: a profile of a busy server showed ~12 % of its CPU in
/// glibc's allocator (docs/benchmarks.md, "Issue 19, third steps").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use storefront::bootstrap::{build_app, open_store, BootError};
use storefront::config::{Config, Overrides};
use storefront::serve::{serve, shutdown_signal};
use storefront::telemetry;
use storefront_app::jobs::Worker;
use storefront_app::secrets::random_token;
use storefront_app::{App, SystemClock};
use storefront_domain::account::KeyRole;
use storefront_domain::money::display_minor;
use storefront_domain::DomainError;

#[derive(Parser)]
#[command(
    name = "storefront",
    version,
    about = "The self-hostable agent storefront."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GlobalArgs {
    #[command(flatten)]
    connection: storefront::agent::Connection,
    /// TOML configuration file (default: storefront.toml in the working directory, if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (default ./data).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (default: a SQLite file in the data directory).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and/or run the background worker (see --role).
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// What this process does.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Operator administration.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Machine images for the local provisioner.
    #[command(subcommand)]
    Image(ImageCommand),
    /// The product catalog: print the built-in one, check a file before serving it.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    #[command(flatten)]
    Agent(storefront::agent::AgentCommand),
    /// Serve the MCP tools on stdin/stdout (for agent frameworks that launch a command). Acts
    /// on the configured database with the key in STOREFRONT_API_KEY (browse and quote without).
    Mcp,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build (once) and cache a base image, with progress.
    Build {
        /// The image to build (one of the catalog's machine images).
        #[arg(long, default_value = "debian-12")]
        image: String,
    },
    /// List the images built here.
    List,
    /// Build (once) an image for the LXD/Incus provisioner from the same Debian base, as a
    /// tarball for `lxc image import FILE --alias IMAGE` (docs/machines.md).
    ExportLxd {
        #[arg(long, default_value = "debian-12")]
        image: String,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Print the built-in catalog (TOML): a starting point for your own `catalog_file`.
    PrintDefault,
    /// Validate a catalog file as `serve` would load it, and list its products.
    Check {
        /// The catalog file (TOML; format in docs/catalog.md).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Serve HTTP only (scale these behind a load balancer).
    Api,
    /// Run background jobs only (scale these separately).
    Worker,
    /// Both, in one process (the default; the only sensible choice on SQLite).
    All,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an account and its first owner key.
    CreateAccount {
        /// The owner's e-mail address (unique among accounts).
        #[arg(long)]
        email: String,
        /// The account's display name.
        #[arg(long)]
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add credits to an account (a negative amount is an adjustment down).
    GrantCredits {
        /// The account to credit (`acct_...`; see `admin list-accounts`).
        #[arg(long, value_name = "ACCOUNT_ID")]
        account: String,
        /// The amount in minor units (cents): 500 is 5.00; negative to adjust down.
        #[arg(long, allow_hyphen_values = true)]
        amount_minor: i64,
        /// Why, written into the ledger entry the owner sees.
        #[arg(long)]
        reason: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create an API key for an account.
    CreateKey {
        /// The account the key acts for (`acct_...`).
        #[arg(long, value_name = "ACCOUNT_ID")]
        account: String,
        /// `owner` manages the account; `agent` buys within an agent's rules (needs --agent).
        #[arg(long, value_parser = ["owner", "agent"])]
        role: String,
        /// The agent an agent key belongs to (`agt_...`).
        #[arg(long, value_name = "AGENT_ID")]
        agent: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a one-time code that signs the account's owner in to the dashboard (10 minutes).
    LoginCode {
        /// The account to sign in to (`acct_...`).
        #[arg(long, value_name = "ACCOUNT_ID")]
        account: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the accounts.
    ListAccounts {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replace the URL-signing key (signed URLs already handed out stay valid until they expire).
    RotateSigningKey,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] storefront::config::ConfigError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("{}\n  hint: {}", .0.message, .0.suggestion)]
    Domain(DomainError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An agent command's outcome, already reported.
    #[error("")]
    Exit(u8),
}

impl From<DomainError> for CliError {
    fn from(e: DomainError) -> Self {
        Self::Domain(e)
    }
}

fn main() -> ExitCode {
    // The lease runner forks; it must start before any runtime thread exists.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("lease-run") {
        storefront_providers::local::runner::main(
            args.get(2).map(String::as_str).unwrap_or_default(),
        );
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The application on the configured database, for commands that act on it directly (admin,
/// stdio MCP) rather than through a server.
async fn local_app(config: &Config) -> Result<App, CliError> {
    let store = open_store(config).await?;
    let base_url = config
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    Ok(build_app(config, store, Arc::new(SystemClock), base_url).await?)
}

async fn run(cli: Cli) -> Result<(), CliError> {
    // Agent commands talk to a running storefront; they need no local configuration.
    let command = match cli.command {
        Command::Agent(command) => {
            return match storefront::agent::run(cli.global.connection, command).await {
                storefront::agent::Outcome::Done => Ok(()),
                other => Err(CliError::Exit(other as u8)),
            };
        }
        other => other,
    };
    let listen = match &command {
        Command::Serve { listen, .. } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        config: cli.global.config,
        listen,
        data_dir: cli.global.data_dir,
        database_url: cli.global.database_url,
    };
    let config = Config::load(&overrides)?;
    match command {
        Command::Serve { role, .. } => {
            telemetry::init(&config);
            run_serve(config, role).await
        }
        Command::Migrate => {
            open_store(&config).await?;
            storefront::say!(
                "migrations applied to {}",
                storefront_store::redact_url(&config.database_url())
            );
            Ok(())
        }
        Command::Image(cmd) => {
            let images = storefront_providers::local::image::ImageStore::new(
                config
                    .image_dir
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("images")),
            );
            match cmd {
                ImageCommand::Build { image } => {
                    if !images.is_built(&image) {
                        let (low, high) = storefront_providers::local::image::TYPICAL_BUILD_SECONDS;
                        storefront::say!(
                            "building {image}; this usually takes {low} s to {} min",
                            high / 60
                        );
                    }
                    let path = images
                        .build(&image, config.image_mirror.as_deref(), |step| {
                            storefront::say!("  {step}")
                        })
                        .await
                        .map_err(std::io::Error::other)?;
                    storefront::say!("{image}: {}", path.display());
                }
                ImageCommand::ExportLxd { image } => {
                    let path = images
                        .build_lxd(&image, config.image_mirror.as_deref(), |step| {
                            storefront::say!("  {step}")
                        })
                        .await
                        .map_err(std::io::Error::other)?;
                    storefront::say!("{image} for LXD: {}", path.display());
                    storefront::say!(
                        "import it: lxc image import {} --alias {image}",
                        path.display()
                    );
                }
                ImageCommand::List => {
                    for image in images.available() {
                        storefront::say!("{image}");
                    }
                }
            }
            Ok(())
        }
        Command::Catalog(CatalogCommand::PrintDefault) => {
            storefront::say!(
                "{}",
                storefront_domain::catalog::DEFAULT_CATALOG_TOML.trim_end()
            );
            Ok(())
        }
        Command::Catalog(CatalogCommand::Check { file, json }) => {
            let config = Config {
                catalog_file: Some(file),
                ..config
            };
            let provisioners = storefront::bootstrap::Provisioners::of(&config).await?;
            let loaded = storefront::bootstrap::load_catalog(&config, &provisioners)?;
            let products = loaded.catalog.products();
            if json {
                let list: Vec<_> = products
                    .iter()
                    .map(|p| json!({"id": p.id, "available": p.available, "unavailable_reason": p.unavailable_reason}))
                    .collect();
                storefront::say!(
                    "{}",
                    json!({"ok": true, "source": loaded.origin, "version": loaded.catalog.version(), "products": list})
                );
            } else {
                storefront::say!(
                    "{}: {} products, version {}",
                    loaded.origin,
                    products.len(),
                    loaded.catalog.version()
                );
                for p in products {
                    match &p.unavailable_reason {
                        Some(why) => storefront::say!("  {}  unavailable here: {why}", p.id),
                        None => storefront::say!("  {}  {}", p.id, p.pricing.summary()),
                    }
                }
            }
            Ok(())
        }
        Command::Agent(_) => unreachable!("agent commands returned above"),
        Command::Mcp => {
            telemetry::init(&config);
            let app = local_app(&config).await?;
            let principal = match std::env::var("STOREFRONT_API_KEY") {
                Ok(key) if !key.is_empty() => app.authenticate(&key).await.map_err(|e| {
                    std::io::Error::other(format!("STOREFRONT_API_KEY: {}", e.message))
                })?,
                _ => storefront_app::Principal::Public,
            };
            storefront_mcp::serve_stdio(app, principal).await?;
            Ok(())
        }
        Command::Admin(cmd) => {
            let app = local_app(&config).await?;
            run_admin(&app, cmd).await
        }
    }
}

async fn run_serve(config: Config, role: Role) -> Result<(), CliError> {
    let store = open_store(&config).await?;
    // One signal stops everything this process runs: the HTTP server drains in-flight
    // requests, the worker finishes the job in hand.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let listener = match role {
        Role::Worker => None,
        Role::Api | Role::All => Some(
            tokio::net::TcpListener::bind(&config.listen)
                .await
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot listen on {}: {e}", config.listen),
                    )
                })?,
        ),
    };
    let base_url = match (&config.base_url, &listener) {
        (Some(url), _) => url.clone(),
        (None, Some(l)) => format!("http://{}", l.local_addr()?),
        (None, None) => format!("http://{}", config.listen),
    };
    let app = build_app(&config, store, Arc::new(SystemClock), base_url.clone()).await?;

    let worker_id = format!("worker-{}-{}", std::process::id(), &random_token()[..8]);
    let worker = (role != Role::Api).then(|| {
        let id = worker_id.clone();
        let app = app.clone();
        let stop = stopped();
        let stopped = stopped.clone();
        let lease = chrono::Duration::seconds(config.job_lease_seconds.min(86_400) as i64);
        tokio::spawn(async move {
            if let Err(e) = app.reconcile_machines().await {
                tracing::error!(error = %e.message, "reconciling machines failed");
            }
            // Webhook deliveries run beside the jobs, under the same stop signal.
            let deliveries = tokio::spawn({
                let (app, id, stop) = (app.clone(), id.clone(), stopped());
                async move { app.run_webhook_deliveries(id, stop).await }
            });
            app.background_jobs(Worker::new(app.clone(), id).with_lease(lease))
                .run(stop)
                .await;
            let _ = deliveries.await;
        })
    });

    if role == Role::Worker {
        // Nothing else tells a person (or a supervisor) that a worker-only process came up.
        storefront::say!("Storefront worker {worker_id} is running (no HTTP with --role worker)");
    }
    if let Some(listener) = listener {
        tracing::info!(listen = %listener.local_addr()?, database = %storefront_store::redact_url(&config.database_url()), "storefront listening");
        storefront::say!("Storefront is serving on {base_url}");
        if config.demo_account {
            if let Some(demo) = app.ensure_demo_account().await? {
                print_demo(&base_url, &demo);
            }
        }
        serve(app, listener, stopped()).await?;
    }
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The first-start welcome: the demo key (printed once, to the terminal, never to the logs) and
/// a purchase to paste.
fn print_demo(base_url: &str, demo: &storefront_app::accounts::DemoAccount) {
    let a = &demo.account;
    storefront::say!();
    storefront::say!(
        "Created a demo account {} ({}) with {} in credits.",
        a.id,
        a.email,
        display_minor(a.balance_minor, &a.currency)
    );
    storefront::say!("Its API key is shown only this once:");
    storefront::say!();
    storefront::say!("  export STOREFRONT_API_KEY={}", demo.api_key);
    storefront::say!();
    storefront::say!("Buy a web search with it:");
    storefront::say!();
    storefront::say!(
        "  curl -s {base_url}/api/v1/orders -H \"Authorization: Bearer $STOREFRONT_API_KEY\" \\\n    -H 'Content-Type: application/json' -H \"Idempotency-Key: first-purchase-1\" \\\n    -d '{{\"product_id\": \"web-search\", \"configuration\": {{\"query\": \"linux machine\"}}}}'"
    );
    storefront::say!();
}

async fn run_admin(app: &App, cmd: AdminCommand) -> Result<(), CliError> {
    match cmd {
        AdminCommand::CreateAccount { email, name, json } => {
            let (account, key) = app.admin_create_account(&email, &name).await?;
            if json {
                storefront::say!(
                    "{}",
                    json!({ "account_id": account.id, "api_key": key.api_key })
                );
            } else {
                storefront::say!(
                    "account: {}\nowner key (shown once): {}",
                    account.id,
                    key.api_key
                );
            }
        }
        AdminCommand::GrantCredits {
            account,
            amount_minor,
            reason,
            json,
        } => {
            let entry = app
                .admin_grant_credits(&account, amount_minor, &reason)
                .await?;
            let currency = app.settings().account_currency.clone();
            if json {
                storefront::say!(
                    "{}",
                    json!({ "balance_minor": entry.balance_after_minor, "currency": currency })
                );
            } else {
                storefront::say!(
                    "balance: {} ({} minor units)",
                    display_minor(entry.balance_after_minor, &currency),
                    entry.balance_after_minor
                );
            }
        }
        AdminCommand::CreateKey {
            account,
            role,
            agent,
            json,
        } => {
            let role = KeyRole::parse(&role).unwrap_or(KeyRole::Owner);
            let key = app
                .admin_create_key(&account, role, agent.as_deref())
                .await?;
            if json {
                storefront::say!(
                    "{}",
                    json!({ "key_id": key.key_id, "api_key": key.api_key })
                );
            } else {
                storefront::say!("key: {}\nsecret (shown once): {}", key.key_id, key.api_key);
            }
        }
        AdminCommand::LoginCode { account, json } => {
            let issued = app.admin_login_code(&account).await?;
            let expires_at = storefront_domain::timestamp::format(&issued.expires_at);
            if json {
                storefront::say!(
                    "{}",
                    json!({
                        "login_code": issued.code,
                        "expires_at": expires_at,
                        "login_url": format!("{}/dashboard/login", app.settings().base_url),
                    })
                );
            } else {
                storefront::say!(
                    "login code (one use, until {expires_at}): {}\nsign in at {}/dashboard/login",
                    issued.code,
                    app.settings().base_url
                );
            }
        }
        AdminCommand::RotateSigningKey => {
            app.rotate_signing_key().await?;
            storefront::say!("signing key rotated; restart the servers to sign with it (URLs signed before stay valid)");
        }
        AdminCommand::ListAccounts { json } => {
            let accounts = app.admin_list_accounts().await?;
            if json {
                let list: Vec<_> = accounts
                    .iter()
                    .map(|a| json!({ "account_id": a.id, "email": a.email, "name": a.name, "balance_minor": a.balance_minor, "currency": a.currency, "created_at": storefront_domain::timestamp::format(&a.created_at) }))
                    .collect();
                storefront::say!("{}", serde_json::Value::Array(list));
            } else if accounts.is_empty() {
                storefront::say!("no accounts");
            } else {
                for a in accounts {
                    storefront::say!(
                        "{}  {:<30} {:>14}  {}",
                        a.id,
                        a.email,
                        display_minor(a.balance_minor, &a.currency),
                        a.name
                    );
                }
            }
        }
    }
    Ok(())
}
