//! The agent command line: the REST API from a shell (docs/api.md, "Catalog" to "Services"), for
//! agents that speak commands rather than HTTP. It talks to a running storefront at
//! `STOREFRONT_URL` with `STOREFRONT_API_KEY`, prints people-readable text by default and the API's
//! `data` as JSON with `--json`.
//!
//! Exit codes: 0 success; 1 the storefront refused the request (its error code and suggestion are
//! printed); 2 wrong usage; 3 the storefront could not be reached or failed (5xx); 4 `--wait` gave
//! up before the order was done.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::time::Duration;

mod events;
mod view;
mod wait;

#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The storefront's base URL.
    #[arg(
        long,
        env = "STOREFRONT_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// An owner or agent API key (sf_live_...).
    #[arg(
        long,
        env = "STOREFRONT_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub api_key: Option<String>,
    /// Print the API's answer as JSON (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// `--wait` and how long to wait, for commands that start something.
#[derive(Args, Debug, Clone, Copy)]
pub struct Waiting {
    /// Wait until it is done, showing what happens meanwhile.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    timeout: u64,
}

/// Where a generated private key goes.
#[derive(Args, Debug, Clone)]
pub struct KeyChoice {
    /// Write a generated private key to this file (mode 0600; default: SERVICE_ID.key here).
    #[arg(long, value_name = "FILE", conflicts_with = "print_key")]
    key_file: Option<std::path::PathBuf>,
    /// Print a generated private key instead of writing it to a file.
    #[arg(long)]
    print_key: bool,
}

impl KeyChoice {
    fn output(&self) -> view::KeyOutput {
        if self.print_key {
            view::KeyOutput::Print
        } else {
            view::KeyOutput::File(self.key_file.clone())
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// List or search the catalog.
    Products {
        /// Free-text search.
        #[arg(long)]
        q: Option<String>,
        /// Only this category (`compute`, `search`, ...).
        #[arg(long)]
        category: Option<String>,
    },
    /// Price a product's configuration (nothing is bought).
    Quote {
        /// The product to price.
        product_id: String,
        /// A configuration field, `name=value` (repeatable). Numbers and true/false are typed.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// How many (default 1).
        #[arg(long)]
        quantity: Option<i64>,
    },
    /// Buy a product (or a stored quote) with the account's credit.
    Buy {
        /// The product to buy (omit with --quote).
        product_id: Option<String>,
        /// A configuration field, `name=value` (repeatable). Numbers and true/false are typed.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// How many (default 1).
        #[arg(long)]
        quantity: Option<i64>,
        /// Buy this quote instead of configuring a product.
        #[arg(long, conflicts_with_all = ["product_id", "set", "quantity"])]
        quote: Option<String>,
        /// The idempotency key (default: a new one). Reuse it to retry without buying twice.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Refuse to buy when the configuration had to be normalized (the quote carries
        /// warnings): nothing is bought and the warnings are printed.
        #[arg(long)]
        strict: bool,
        #[command(flatten)]
        waiting: Waiting,
        #[command(flatten)]
        key: KeyChoice,
    },
    /// The account's orders, newest first.
    Orders {
        /// Only orders in this status (`fulfilled`, `processing`, ...).
        #[arg(long)]
        status: Option<String>,
    },
    /// The account's services (machines), newest first.
    Services,
    /// The SSH credentials of a machine.
    Credentials {
        service_id: String,
        #[command(flatten)]
        key: KeyChoice,
    },
    /// Open an SSH session on a machine with its handed-off credentials.
    Ssh {
        service_id: String,
        /// A command to run instead of an interactive shell.
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Restart a machine (files kept).
    Restart {
        service_id: String,
        #[command(flatten)]
        waiting: Waiting,
    },
    /// Reinstall a machine from an image (files wiped).
    Reinstall {
        service_id: String,
        /// The image (default: the one the machine runs).
        #[arg(long)]
        image: Option<String>,
        #[command(flatten)]
        waiting: Waiting,
    },
    /// Extend a machine's lease.
    Extend {
        service_id: String,
        /// Minutes to add (rounded up to the product's billing unit).
        #[arg(long)]
        minutes: i64,
        /// The idempotency key (default: a new one). Reuse it to retry without paying twice.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        waiting: Waiting,
    },
    /// Terminate a machine now.
    Terminate {
        service_id: String,
        #[command(flatten)]
        waiting: Waiting,
    },
    /// The account's credit balance.
    Balance,
    /// What happened, oldest first (an agent key: its own agent's events).
    Events {
        /// Only events after this one (`evt_...`).
        #[arg(long)]
        after: Option<String>,
        /// Only these types, comma-separated (`order.paid,service.active`).
        #[arg(long = "type", value_name = "TYPES")]
        types: Option<String>,
        /// Keep printing events as they happen (a live stream that resumes by itself after a
        /// dropped connection) until interrupted.
        #[arg(long)]
        follow: bool,
    },
}

/// How a command ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done = 0,
    Refused = 1,
    /// Wrong usage the argument parser cannot see (a malformed `--set`), like clap's own `2`.
    Usage = 2,
    Unreachable = 3,
    TimedOut = 4,
}

struct Client {
    conn: Connection,
    http: reqwest::Client,
}

/// An answer of the storefront that is not a success.
enum Failure {
    Refused(Value),
    Unreachable(String),
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
        query: &[(&str, String)],
    ) -> Result<(Value, Option<u64>), Failure> {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.conn.url.trim_end_matches('/'))
        };
        let retry_safe = method == reqwest::Method::GET;
        let mut req = self.http.request(method, url).query(query);
        if let Some(key) = &self.conn.api_key {
            req = req.bearer_auth(key);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let unreachable = |e: reqwest::Error| {
            Failure::Unreachable(format!("cannot reach {}: {e}", self.conn.url))
        };
        // A read is sent again once if the connection failed under it (a server closing an idle
        // connection just as it is reused); writes carry idempotency keys and are the caller's
        // to retry.
        let retry = if retry_safe { req.try_clone() } else { None };
        let resp = match (req.send().await, retry) {
            (Ok(resp), _) => resp,
            (Err(e), Some(again)) if e.is_connect() || e.is_request() => {
                again.send().await.map_err(unreachable)?
            }
            (Err(e), _) => return Err(unreachable(e)),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body: Value = resp
            .json()
            .await
            .map_err(|e| Failure::Unreachable(format!("unreadable answer ({status}): {e}")))?;
        if status.is_server_error() {
            return Err(Failure::Unreachable(format!(
                "the storefront failed ({status}): {}",
                body["error"]["message"].as_str().unwrap_or("no message")
            )));
        }
        if body["ok"] == true {
            Ok((body["data"].clone(), retry_after))
        } else {
            Err(Failure::Refused(body["error"].clone()))
        }
    }

    async fn get(&self, path: &str) -> Result<(Value, Option<u64>), Failure> {
        self.call(reqwest::Method::GET, path, None, None, &[]).await
    }

    async fn get_with(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, path, None, None, query)
            .await
            .map(|(v, _)| v)
    }

    async fn post(&self, path: &str, body: Value, key: Option<&str>) -> Result<Value, Failure> {
        self.call(reqwest::Method::POST, path, Some(body), key, &[])
            .await
            .map(|(v, _)| v)
    }
}

/// `name=value` pairs into a configuration object; numbers and booleans are typed.
fn configuration(pairs: &[String]) -> Result<Map<String, Value>, String> {
    pairs
        .iter()
        .map(|pair| {
            let (name, raw) = pair
                .split_once('=')
                .ok_or_else(|| format!("'{pair}' is not NAME=VALUE"))?;
            let value = serde_json::from_str::<Value>(raw)
                .ok()
                .filter(|v| v.is_number() || v.is_boolean())
                .unwrap_or_else(|| Value::String(raw.to_owned()));
            Ok((name.trim().to_owned(), value))
        })
        .collect()
}

fn new_key() -> String {
    format!("cli-{}", storefront_app::secrets::random_token())
}

fn report(failure: Failure, json_output: bool) -> Outcome {
    match failure {
        Failure::Refused(error) => {
            if json_output {
                crate::say!("{}", json!({ "error": error }));
            } else {
                eprintln!(
                    "error {}: {}",
                    error["code"].as_str().unwrap_or("?"),
                    error["message"].as_str().unwrap_or("")
                );
                if let Some(s) = error["suggestion"].as_str() {
                    eprintln!("  hint: {s}");
                }
            }
            Outcome::Refused
        }
        Failure::Unreachable(why) => {
            eprintln!("error: {why}");
            Outcome::Unreachable
        }
    }
}

/// Runs one agent command.
pub async fn run(conn: Connection, command: AgentCommand) -> Outcome {
    let json_output = conn.json;
    // Idle connections are dropped well before the server's header read timeout (10 s by
    // default) would close them under a request, as `--wait` pauses up to 10 s between polls.
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let client = Client { conn, http };
    match execute(&client, command).await {
        Ok(outcome) => outcome,
        Err(f) => report(f, json_output),
    }
}

async fn execute(client: &Client, command: AgentCommand) -> Result<Outcome, Failure> {
    let json_output = client.conn.json;
    let print =
        |data: &Value| crate::say!("{}", serde_json::to_string_pretty(data).unwrap_or_default());
    let usage = |why: String| {
        eprintln!("error: {why}");
        Ok(Outcome::Usage)
    };
    match command {
        AgentCommand::Products { q, category } => {
            let query: Vec<(&str, String)> = [("q", q), ("category", category)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            let data = client.get_with("/api/v1/products", &query).await?;
            if json_output {
                print(&data);
            } else {
                view::products(&data);
            }
        }
        AgentCommand::Quote {
            product_id,
            set,
            quantity,
        } => {
            let configuration = match configuration(&set) {
                Ok(c) => c,
                Err(why) => return usage(why),
            };
            let data = client
                .post(
                    "/api/v1/quotes",
                    json!({"product_id": product_id, "quantity": quantity, "configuration": configuration}),
                    None,
                )
                .await?;
            if json_output {
                print(&data);
            } else {
                let q = &data["quote"];
                crate::say!(
                    "quote {}  {}  valid until {}",
                    q["id"].as_str().unwrap_or("?"),
                    view::money(&q["total_minor"], &q["currency"]),
                    q["expires_at"].as_str().unwrap_or("?")
                );
                view::warnings(q);
            }
        }
        AgentCommand::Buy {
            product_id,
            set,
            quantity,
            quote,
            idempotency_key,
            strict,
            waiting,
            key: key_choice,
        } => {
            let mut body = match (quote, product_id) {
                (Some(q), _) => json!({ "quote_id": q }),
                (None, Some(p)) => match configuration(&set) {
                    Ok(c) => json!({"product_id": p, "quantity": quantity, "configuration": c}),
                    Err(why) => return usage(why),
                },
                (None, None) => return usage("name a product, or --quote QUOTE_ID".into()),
            };
            if strict {
                // Price it first: a normalized configuration is not what the buyer asked for.
                let quote = match body["quote_id"].as_str() {
                    Some(id) => client.get(&format!("/api/v1/quotes/{id}")).await?.0,
                    None => client.post("/api/v1/quotes", body.clone(), None).await?,
                };
                let quote = &quote["quote"];
                if view::warnings(quote) {
                    eprintln!("error: --strict: nothing was bought");
                    return Ok(Outcome::Refused);
                }
                body = json!({ "quote_id": quote["id"] });
            }
            let key = idempotency_key.unwrap_or_else(new_key);
            let data = client.post("/api/v1/orders", body, Some(&key)).await?;
            let mut order = data["order"].clone();
            if !json_output {
                view::order(&order);
                view::warnings(&order);
                eprintln!("idempotency key {key} (reuse it to retry safely)");
                if let Some(tokens) = order.get("management_tokens").filter(|t| !t.is_null()) {
                    crate::say!("management tokens (shown once): {tokens}");
                }
            }
            if !waiting.wait {
                if json_output {
                    print(&data);
                }
                return Ok(Outcome::Done);
            }
            order = match wait::order(client, order, waiting.duration(), json_output).await {
                Ok(o) => o,
                Err(outcome) => return Ok(outcome),
            };
            let mut credentials = Value::Null;
            if order["credentials_available"] == true {
                if let Some(service) = order["service_id"].as_str() {
                    credentials = client
                        .get(&format!("/api/v1/services/{service}/credentials"))
                        .await?
                        .0;
                }
            }
            if json_output {
                print(&json!({"order": order, "credentials": credentials}));
            } else {
                view::order(&order);
                if let (false, Some(service)) =
                    (credentials.is_null(), order["service_id"].as_str())
                {
                    if let Err(why) = view::credentials(&credentials, service, &key_choice.output())
                    {
                        eprintln!("error: {why}");
                        return Ok(Outcome::Usage);
                    }
                }
            }
            if order["status"] != "fulfilled" {
                return Ok(Outcome::Refused);
            }
        }
        AgentCommand::Orders { status } => {
            let query: Vec<(&str, String)> = status.map(|s| ("status", s)).into_iter().collect();
            let data = client.get_with("/api/v1/orders", &query).await?;
            if json_output {
                print(&data);
            } else {
                view::orders(data["orders"].as_array().map_or(&[][..], Vec::as_slice));
            }
        }
        AgentCommand::Services => {
            let (data, _) = client.get("/api/v1/services").await?;
            if json_output {
                print(&data);
            } else {
                view::services(data["services"].as_array().map_or(&[][..], Vec::as_slice));
            }
        }
        AgentCommand::Credentials { service_id, key } => {
            let (data, _) = client
                .get(&format!("/api/v1/services/{service_id}/credentials"))
                .await?;
            if json_output {
                print(&data);
            } else if let Err(why) = view::credentials(&data, &service_id, &key.output()) {
                eprintln!("error: {why}");
                return Ok(Outcome::Usage);
            }
        }
        AgentCommand::Ssh {
            service_id,
            command,
        } => {
            let (data, _) = client
                .get(&format!("/api/v1/services/{service_id}/credentials"))
                .await?;
            return Ok(ssh(&data, &command));
        }
        AgentCommand::Restart {
            service_id,
            waiting,
        } => {
            let data = client
                .post(
                    &format!("/api/v1/services/{service_id}/restart"),
                    json!({}),
                    None,
                )
                .await?;
            return act_on_service(client, data, waiting, &["active"]).await;
        }
        AgentCommand::Reinstall {
            service_id,
            image,
            waiting,
        } => {
            let body = image.map_or_else(|| json!({}), |image| json!({ "image": image }));
            let data = client
                .post(
                    &format!("/api/v1/services/{service_id}/reinstall"),
                    body,
                    None,
                )
                .await?;
            return act_on_service(client, data, waiting, &["active"]).await;
        }
        AgentCommand::Extend {
            service_id,
            minutes,
            idempotency_key,
            waiting,
        } => {
            let key = idempotency_key.unwrap_or_else(new_key);
            let data = client
                .post(
                    &format!("/api/v1/services/{service_id}/extend"),
                    json!({ "additional_minutes": minutes }),
                    Some(&key),
                )
                .await?;
            // An extension waiting for the owner's approval is an order: wait for that.
            if waiting.wait && !data["order"].is_null() {
                if !json_output {
                    eprintln!("the extension waits for the owner's approval");
                }
                return match wait::order(
                    client,
                    data["order"].clone(),
                    waiting.duration(),
                    json_output,
                )
                .await
                {
                    Ok(order) => {
                        if json_output {
                            print(&json!({ "order": order }));
                        } else {
                            view::order(&order);
                        }
                        Ok(if order["status"] == "fulfilled" {
                            Outcome::Done
                        } else {
                            Outcome::Refused
                        })
                    }
                    Err(outcome) => Ok(outcome),
                };
            }
            if json_output {
                print(&data);
            } else if data["service"].is_object() {
                view::service(&data);
            } else {
                crate::say!(
                    "{}",
                    serde_json::to_string_pretty(&data).unwrap_or_default()
                );
            }
        }
        AgentCommand::Terminate {
            service_id,
            waiting,
        } => {
            let data = client
                .post(
                    &format!("/api/v1/services/{service_id}/terminate"),
                    json!({}),
                    None,
                )
                .await?;
            return act_on_service(client, data, waiting, &["terminated"]).await;
        }
        AgentCommand::Balance => {
            let (data, _) = client.get("/api/v1/account/balance").await?;
            if json_output {
                print(&data);
            } else {
                crate::say!("{}", view::money(&data["balance_minor"], &data["currency"]));
            }
        }
        AgentCommand::Events {
            after,
            types,
            follow,
        } => return events::run(client, after, types, follow).await,
    }
    Ok(Outcome::Done)
}

impl Waiting {
    fn duration(self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// Shows a service action's answer and, with `--wait`, waits for the service to reach one of
/// `until`.
async fn act_on_service(
    client: &Client,
    data: Value,
    waiting: Waiting,
    until: &'static [&'static str],
) -> Result<Outcome, Failure> {
    let json_output = client.conn.json;
    let shown = if waiting.wait {
        match wait::service(
            client,
            data["service"].clone(),
            until,
            waiting.duration(),
            json_output,
        )
        .await
        {
            Ok(service) => json!({ "service": service }),
            Err(outcome) => return Ok(outcome),
        }
    } else {
        data
    };
    if json_output {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(&shown).unwrap_or_default()
        );
    } else {
        view::service(&shown);
    }
    let reached = !waiting.wait
        || shown["service"]["status"]
            .as_str()
            .is_some_and(|s| until.contains(&s));
    Ok(if reached {
        Outcome::Done
    } else {
        Outcome::Refused
    })
}

/// Runs the OpenSSH client with the machine's credentials: its generated key in a private temp
/// file, and its host key pinned from the credentials (`StrictHostKeyChecking=yes`), so a server
/// that presents any other key is refused instead of trusted on first use.
fn ssh(data: &Value, command: &[String]) -> Outcome {
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    let c = &data["credentials"];
    let Some(known_host) = c["known_hosts_line"].as_str() else {
        eprintln!("error: the storefront did not hand over the machine's host key, so it cannot be pinned");
        eprintln!("hint: connect with the `ssh` command `storefront credentials` prints, and check the fingerprint yourself");
        return Outcome::Refused;
    };
    let dir = std::env::temp_dir().join(format!("storefront-ssh-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        eprintln!("error: cannot create a temporary directory");
        return Outcome::Unreachable;
    }
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let known_hosts = dir.join("known_hosts");
    if std::fs::write(&known_hosts, format!("{known_host}\n")).is_err() {
        eprintln!("error: cannot write the known-hosts file");
        return Outcome::Unreachable;
    }
    let mut args: Vec<String> = vec![
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-p".into(),
        c["port"].to_string(),
    ];
    if let Some(key) = c["private_key"].as_str() {
        let path = dir.join("id");
        if std::fs::write(&path, key).is_err()
            || std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).is_err()
        {
            eprintln!("error: cannot write the private key");
            return Outcome::Unreachable;
        }
        args.extend([
            "-i".into(),
            path.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ]);
    }
    // Ask for the pinned key's algorithm, so a server with several host keys offers that one.
    if let Some(algorithm) = known_host.split_whitespace().nth(1) {
        args.extend(["-o".into(), format!("HostKeyAlgorithms={algorithm}")]);
    }
    args.push(format!(
        "{}@{}",
        c["username"].as_str().unwrap_or("root"),
        c["host"].as_str().unwrap_or("127.0.0.1")
    ));
    args.extend(command.iter().cloned());
    // ssh's own diagnostics pass through; a host-key refusal is recognised in them so it can be
    // explained (ssh exits 255 for every connection failure alike).
    let child = std::process::Command::new("ssh")
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            eprintln!("error: cannot run ssh: {e}");
            return Outcome::Unreachable;
        }
    };
    // Relayed as bytes, as they come (ssh's prompts and remote output need not be lines or
    // UTF-8); the first 64 KiB are searched for ssh's own refusal.
    let mut key_refused = false;
    if let Some(mut stderr) = child.stderr.take() {
        let mut out = std::io::stderr();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stderr.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = out.write_all(&buffer[..n]);
                    if seen.len() < 64 * 1024 {
                        seen.extend_from_slice(&buffer[..n]);
                    }
                }
            }
        }
        let said = String::from_utf8_lossy(&seen);
        key_refused = said.contains("Host key verification failed")
            || said.contains("HOST IDENTIFICATION HAS CHANGED");
    }
    let status = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if key_refused {
        eprintln!(
            "error: the machine at {}:{} presented a host key other than the one the storefront recorded ({}); refusing to connect",
            c["host"].as_str().unwrap_or("?"),
            c["port"],
            c["host_key_fingerprint"].as_str().unwrap_or("?")
        );
        eprintln!("hint: if the machine was just reinstalled, wait until its service is active again and retry; otherwise something else answers on that address, so do not send it secrets");
        return Outcome::Refused;
    }
    match status {
        Ok(s) if s.success() => Outcome::Done,
        Ok(_) => Outcome::Refused,
        Err(e) => {
            eprintln!("error: cannot run ssh: {e}");
            Outcome::Unreachable
        }
    }
}
