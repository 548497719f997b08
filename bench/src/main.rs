//! `cargo run --release -p bench --`: builds the release binaries, starts the storefront on
//! SQLite (and on PostgreSQL when `STOREFRONT_TEST_POSTGRES_URL` names a server), drives its hot
//! paths with `wrk` from a separate process on loopback, and prints each beside the ceiling
//! measured in the same run on the same machine: a minimal axum server (HTTP ceiling) and the
//! raw single-row durable commit rate of the same database with the same settings (storage
//! ceiling). Results are printed as a Markdown table for `docs/benchmarks.md`.

mod preload;

use clap::Parser;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Storefront benchmark: hot paths beside the machine's ceilings")]
struct Args {
    /// Seconds each load run lasts.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent connections of each load run.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Connections of the memory run.
    #[arg(long, default_value_t = 256)]
    memory_connections: u32,
    /// Use the release binaries already built.
    #[arg(long)]
    skip_build: bool,
    /// Orders of other accounts loaded before the reads are measured again (0: skip that part).
    #[arg(long, default_value_t = 1_000_000)]
    preload_orders: u64,
    /// Accounts those orders are spread over.
    #[arg(long, default_value_t = 10_000)]
    preload_accounts: u64,
    /// Runs of each side of a side-by-side comparison, alternated (the ratio is their median):
    /// the reads on either side of the preload, and the catalog answers against the static body
    /// of the same size. A shared machine's speed drifts over the minutes between single runs.
    #[arg(long, alias = "scale-rounds", default_value_t = 3)]
    rounds: u32,
    /// Run only the scenarios whose name contains one of these (comma-separated, e.g.
    /// `--only check,credit`); the ceilings are still measured.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl Load {
    /// Makes this run's error counts those of all of `runs` together, by kind.
    fn count_errors_of(&mut self, runs: &[Load]) {
        self.errors = runs.iter().map(|r| r.errors).sum();
        let mut kinds: Vec<(String, u64)> = Vec::new();
        for (kind, n) in runs.iter().flat_map(|r| &r.error_kinds) {
            match kinds.iter_mut().find(|(k, _)| k == kind) {
                Some((_, total)) => *total += n,
                None => kinds.push((kind.clone(), *n)),
            }
        }
        self.error_kinds = kinds;
    }
}

impl Args {
    fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| scenario.contains(o.as_str()))
    }
}

/// One load run's figures.
#[derive(Debug, Clone, Default)]
struct Load {
    rps: f64,
    /// Requests completed in the run.
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// Every failed request: answers that were not 2xx or 3xx, and socket errors.
    errors: u64,
    /// The same, by kind as wrk counts them (`non-2xx`, `connect`, `read`, `write`, `timeout`).
    error_kinds: Vec<(String, u64)>,
}

/// A load run: name, path, wrk script, which ceiling it is compared with, that ceiling, and the
/// target ratio.
type Scenario = (&'static str, String, Option<String>, &'static str, f64, f64);

struct Row {
    name: String,
    load: Load,
    rss_mb: f64,
    ceiling_name: &'static str,
    ceiling: f64,
    target: f64,
    /// The server's own count of the run's error answers, by status code (from `/metrics`).
    statuses: Vec<(String, u64)>,
    /// One error answer (status and body) from a one-second rerun, when the run had errors.
    sample: Option<String>,
    /// The first `ERROR` lines the server logged during the run, when it had errors.
    logged: Vec<String>,
    /// The server's CPU time (user + system, all threads) per request of the run, in µs: what
    /// a request costs, steadier from run to run than its rate on a shared machine.
    cpu_us: f64,
    /// Every round's ratio, in the order they ran, when the scenario alternated with its
    /// ceiling (`load` and `ceiling` are then the median round's); empty for a single run.
    round_ratios: Vec<f64>,
}

fn main() {
    let args = Args::parse();
    let bin_dir = std::env::current_exe()
        .expect("own path")
        .parent()
        .expect("target dir")
        .to_path_buf();
    if !args.skip_build {
        eprintln!("building the release binaries (storefront, bench-hello)...");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "storefront",
                "-p",
                "bench",
                "--bins",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "the release build failed");
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed: apt-get install wrk (the load generator)");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("{}", describe_machine());

    // Kept running: the same-size static ceilings are measured on it later.
    let hello = Server::start(&bin_dir.join("bench-hello"), &[], None);

    let mut backends = vec![("SQLite", None)];
    if let Ok(url) = std::env::var("STOREFRONT_TEST_POSTGRES_URL") {
        if !url.is_empty() {
            backends.push(("PostgreSQL", Some(url)));
        }
    }
    for (backend, admin_url) in backends {
        // Measured again for each backend, next to its scenarios: on a shared machine the
        // ceiling of the run's first minute is not the one of its twentieth.
        eprintln!("{backend}: HTTP ceiling (a minimal axum server)...");
        let http_ceiling = measure_http_ceiling(&hello.base, &args);
        let data = tempfile::tempdir().expect("temp dir");
        let database_url = admin_url
            .as_ref()
            .map(|admin| runtime.block_on(fresh_postgres_database(admin)));
        eprintln!("{backend}: storage ceiling (single-row durable commits)...");
        let storage_ceiling = runtime.block_on(commit_rate(
            database_url.as_deref(),
            data.path(),
            Duration::from_secs(args.duration),
            args.connections,
        ));
        // On SQLite every write is serialized by the one writer: the storage ceiling above is
        // already the one-row ceiling.
        let hot_row_ceiling = match database_url.as_deref() {
            Some(url) => {
                eprintln!("{backend}: one-row ceiling (64 writers updating one row)...");
                runtime.block_on(postgres_commit_rate(
                    url,
                    "UPDATE ceiling SET v = v WHERE id = 1",
                    Duration::from_secs(args.duration),
                    args.connections,
                ))
            }
            None => storage_ceiling,
        };
        eprintln!("{backend}: point-read ceiling (the driver, no HTTP)...");
        let read_ceiling = runtime.block_on(point_read_rate(
            database_url.as_deref(),
            data.path(),
            Duration::from_secs(args.duration),
            args.connections,
        ));
        let mut rows = runtime.block_on(bench_storefront(
            &bin_dir.join("storefront"),
            data.path(),
            database_url.as_deref(),
            admin_url.as_deref(),
            &args,
            Ceilings {
                http: http_ceiling.rps,
                storage: storage_ceiling,
                hello: &hello.base,
            },
        ));
        rows.read_ceiling = read_ceiling;
        print_table(
            backend,
            &http_ceiling,
            (storage_ceiling, hot_row_ceiling),
            &rows,
        );
        if let (Some(admin), Some(url)) = (&admin_url, &database_url) {
            runtime.block_on(drop_postgres_database(admin, url));
        }
    }
}

/// The rate of primary-key reads of one small row through the same driver and pool size as the
/// store, from as many concurrent tasks as wrk has connections, in this process: what one
/// database read costs before any HTTP, JSON or logic (a request that reads once cannot beat it).
async fn point_read_rate(
    postgres: Option<&str>,
    dir: &Path,
    duration: Duration,
    connections: u32,
) -> f64 {
    let end = Instant::now() + duration;
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    match postgres {
        None => {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
            let file = dir.join("reads.db");
            let options = SqliteConnectOptions::new()
                .filename(&file)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .expect("SQLite opens");
            sqlx::raw_sql("CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT NOT NULL); INSERT INTO t VALUES ('a', 'row');")
                .execute(&writer)
                .await
                .expect("table");
            // The store's reader pool: eight read-only connections.
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options.read_only(true))
                .await
                .expect("SQLite opens");
            for _ in 0..connections {
                let (pool, count) = (pool.clone(), count.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < end {
                        let _: (String, String) =
                            sqlx::query_as("SELECT id, v FROM t WHERE id = $1")
                                .bind("a")
                                .fetch_one(&pool)
                                .await
                                .expect("read");
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }));
            }
        }
        Some(url) => {
            // The store's pool size.
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .connect(url)
                .await
                .expect("PostgreSQL answers");
            sqlx::raw_sql("CREATE TABLE read_ceiling (id TEXT PRIMARY KEY, v TEXT NOT NULL); INSERT INTO read_ceiling VALUES ('a', 'row');")
                .execute(&pool)
                .await
                .expect("table");
            for _ in 0..connections {
                let (pool, count) = (pool.clone(), count.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < end {
                        let _: (String, String) =
                            sqlx::query_as("SELECT id, v FROM read_ceiling WHERE id = $1")
                                .bind("a")
                                .fetch_one(&pool)
                                .await
                                .expect("read");
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }));
            }
        }
    }
    for t in tasks {
        t.await.expect("reader");
    }
    count.load(std::sync::atomic::Ordering::Relaxed) as f64 / duration.as_secs_f64()
}

fn describe_machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let wrk = Command::new("wrk")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    format!(
        "Machine: {cpu}, {cores} cores, {memory} RAM, Linux {}; load generator: {wrk} on loopback, same machine.",
        kernel.trim()
    )
}

/// The storefront's log, in its directory.
const SERVER_LOG: &str = "server.log";

/// The server log's length now: where the next scenario's lines begin.
fn log_length(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(SERVER_LOG)).map_or(0, |m| m.len())
}

/// The first few `ERROR` lines the server logged after `from`.
fn logged_errors(dir: &Path, from: u64) -> Vec<String> {
    let log = std::fs::read(dir.join(SERVER_LOG)).unwrap_or_default();
    let new = log.get(from as usize..).unwrap_or_default();
    String::from_utf8_lossy(new)
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("panicked"))
        .take(3)
        .map(str::to_owned)
        .collect()
}

/// A server process: the storefront or the hello-world ceiling.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(binary: &Path, env: &[(&str, String)], dir: Option<&Path>) -> Self {
        let mut cmd = Command::new(binary);
        if binary.ends_with("storefront") {
            cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        // The storefront's log (warnings and errors) goes to `server.log` in its directory, so
        // an error answer in a run can be explained by what the server said about it.
        let stderr = match dir {
            Some(d) => {
                cmd.current_dir(d);
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(d.join(SERVER_LOG))
                    .map_or_else(|_| Stdio::null(), Stdio::from)
            }
            None => Stdio::null(),
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server prints its address")
                .expect("readable");
            if let Some(url) = line.strip_prefix("Storefront is serving on ") {
                break url.trim().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }

    /// CPU seconds the server has used (user + system), from `/proc/PID/stat`.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) : state is the 3rd field,
        // utime and stime the 14th and 15th.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / clock_ticks_per_second()
    }

    fn rss_mb(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Server {
    /// Stops the server the way an operator does (SIGTERM, then waits for it to exit).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kernel's unit of `/proc/PID/stat` CPU times (`getconf CLK_TCK`, 100 almost everywhere).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The HTTP ceiling: `bench-hello`'s tiny answer, after an unmeasured warm-up (the first
/// seconds of load on an idle machine run slower, by a third in one run here).
fn measure_http_ceiling(hello: &str, args: &Args) -> Load {
    wrk(hello, "/", None, WARM_UP_SECONDS, args.connections);
    wrk(hello, "/", None, args.duration, args.connections)
}

/// Seconds of unmeasured load before a ceiling is measured.
const WARM_UP_SECONDS: u64 = 2;

/// Runs wrk against `base + path` (a Lua script for POST bodies and headers) and reads its
/// throughput, median and 99th percentile.
fn wrk(base: &str, path: &str, script: Option<&str>, seconds: u64, connections: u32) -> Load {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
        "--timeout",
        "10s",
    ]);
    if let Some(lua) = script {
        let file = dir.path().join("script.lua");
        std::fs::write(&file, lua).expect("script written");
        cmd.arg("-s").arg(file);
    }
    let out = cmd.arg(format!("{base}{path}")).output().expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    parse_wrk(&text)
}

fn parse_wrk(text: &str) -> Load {
    let mut load = Load::default();
    let to_ms = |raw: &str| -> f64 {
        let (number, unit) = raw.split_at(
            raw.find(|c: char| c.is_ascii_alphabetic())
                .unwrap_or(raw.len()),
        );
        let n: f64 = number.parse().unwrap_or(0.0);
        match unit {
            "us" => n / 1000.0,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => n,
        }
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Requests/sec:", rps] => load.rps = rps.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => load.requests = n.parse().unwrap_or(0),
            ["50%", v] => load.p50_ms = to_ms(v),
            ["99%", v] => load.p99_ms = to_ms(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                let n = n.parse().unwrap_or(0);
                load.errors += n;
                load.error_kinds.push(("non-2xx".into(), n));
            }
            _ => {}
        }
        // "Socket errors: connect 0, read 12, write 0, timeout 3"
        if let Some(rest) = line.trim().strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                let mut words = part.split_whitespace();
                if let (Some(kind), Some(Ok(n))) = (words.next(), words.next().map(str::parse)) {
                    load.errors += n;
                    if n > 0 {
                        load.error_kinds.push((kind.to_owned(), n));
                    }
                }
            }
        }
    }
    load
}

/// The server's count of error answers (status 400 and up) by status code, from the
/// `storefront_http_requests_total` lines of its `/metrics`.
async fn error_statuses(http: &reqwest::Client, base: &str) -> Vec<(String, u64)> {
    let text = match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut by_status: Vec<(String, u64)> = Vec::new();
    for line in text.lines() {
        let Some(labels) = line.strip_prefix("storefront_http_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = labels.rsplit_once("} ") else {
            continue;
        };
        let status = labels
            .split(',')
            .find_map(|l| l.strip_prefix("status=\""))
            .map(|s| s.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        if status.as_str() >= "400" {
            match by_status.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += count,
                None => by_status.push((status, count)),
            }
        }
    }
    by_status
}

/// The error answers of one run: the counts after it less those before.
fn statuses_between(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(status, n)| {
            let was = before
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            (*n > was).then(|| (status.clone(), n - was))
        })
        .collect()
}

/// One error answer of a scenario: reruns it for a second with a wrk `response` hook that
/// writes the first answer of 400 or more (status and the start of its body) to a file. The hook
/// makes wrk read every body, so it is kept out of the measured run.
fn sample_error(base: &str, path: &str, script: Option<&str>, connections: u32) -> Option<String> {
    let dir = tempfile::tempdir().ok()?;
    let out = dir.path().join("first-error.txt");
    let hook = format!(
        "\nlocal sampled = false\nfunction response(status, headers, body)\n  if status >= 400 and not sampled then\n    sampled = true\n    local f = io.open(\"{}\", \"a\")\n    f:write(status .. \" \" .. string.sub(body, 1, 300) .. \"\\n\")\n    f:close()\n  end\nend\n",
        out.display()
    );
    let script = format!("{}{hook}", script.unwrap_or_default());
    wrk(base, path, Some(&script), 1, connections);
    std::fs::read_to_string(&out)
        .ok()?
        .lines()
        .next()
        .map(str::to_owned)
}

/// A new PostgreSQL database for one run, `sf_bench_PID`: `drop_postgres_database` drops it
/// after the run; one an interrupted run left is dropped by hand.
async fn fresh_postgres_database(admin_url: &str) -> String {
    let name = format!("sf_bench_{}", std::process::id());
    create_postgres_database(admin_url, &name, None).await
}

/// Creates database `name` (empty, or a copy of `template`), replacing one an interrupted run
/// left, and returns its URL on the admin URL's server.
async fn create_postgres_database(admin_url: &str, name: &str, template: Option<&str>) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("PostgreSQL answers");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .await
        .expect("drop");
    let copying = template.map_or_else(String::new, |t| format!(" TEMPLATE {t}"));
    sqlx::query(&format!("CREATE DATABASE {name}{copying}"))
        .execute(&mut conn)
        .await
        .expect("create");
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    format!("{base}/{name}")
}

/// Drops a run's database (with the preload, several gigabytes), waiting for nothing: the
/// storefront was stopped with the run, and any connection left is closed by `FORCE`.
async fn drop_postgres_database(admin_url: &str, database_url: &str) {
    use sqlx::Connection;
    let Some((_, name)) = database_url.rsplit_once('/') else {
        return;
    };
    let dropped = match sqlx::PgConnection::connect(admin_url).await {
        Ok(mut conn) => sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = dropped {
        eprintln!("the run's database {name} was not dropped ({e}); drop it by hand");
    }
}

/// The storage ceiling: single-row INSERTs, each its own durable transaction, as many as the
/// database commits in `duration`. SQLite with the store's settings (WAL, synchronous=FULL, one
/// writer, as the store writes); PostgreSQL with `connections` concurrent writers (its group
/// commit is part of its ceiling).
async fn commit_rate(
    postgres: Option<&str>,
    dir: &Path,
    duration: Duration,
    connections: u32,
) -> f64 {
    match postgres {
        None => {
            use sqlx::sqlite::{
                SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
            };
            let options = SqliteConnectOptions::new()
                .filename(dir.join("ceiling.db"))
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .expect("SQLite opens");
            sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
                .execute(&pool)
                .await
                .expect("table");
            let end = Instant::now() + duration;
            let mut n = 0u64;
            while Instant::now() < end {
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query("INSERT INTO t (v) VALUES ($1)")
                    .bind("row")
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
                n += 1;
            }
            n as f64 / duration.as_secs_f64()
        }
        Some(url) => {
            postgres_commit_rate(
                url,
                "INSERT INTO ceiling (v) VALUES ('row')",
                duration,
                connections,
            )
            .await
        }
    }
}

/// Durable one-statement transactions a second on PostgreSQL from `connections` concurrent
/// writers, each running `statement` over a table `ceiling (id, v)` that starts with one row
/// (`id = 1`): independent inserts give the single-insert ceiling, an update of that one row
/// the ceiling of anything that must update one row per transaction (one account's balance).
async fn postgres_commit_rate(
    url: &str,
    statement: &'static str,
    duration: Duration,
    connections: u32,
) -> f64 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections.min(32))
        .connect(url)
        .await
        .expect("PostgreSQL answers");
    sqlx::query("CREATE TABLE ceiling (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&pool)
        .await
        .expect("table");
    sqlx::query("INSERT INTO ceiling (v) VALUES ('row')")
        .execute(&pool)
        .await
        .expect("first row");
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .expect("statement");
                tx.commit().await.expect("commit");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer");
    }
    sqlx::query("DROP TABLE ceiling").execute(&pool).await.ok();
    total as f64 / duration.as_secs_f64()
}

fn admin(binary: &Path, dir: &Path, env: &[(&str, String)], args: &[&str]) -> Value {
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir).arg("admin").args(args).arg("--json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("admin runs");
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("admin prints JSON")
}

/// Milliseconds from spawning the binary to its first answer on `/healthz`, median of five.
fn cold_start_ms(binary: &Path, dir: &Path, env: &[(&str, String)]) -> f64 {
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let server = Server::start(binary, env, Some(dir));
            assert!(
                probe::answers_ok(&format!("{}/healthz", server.base)),
                "healthz answers"
            );
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

mod probe {
    /// Whether a plain GET over a TCP socket gets `200`, retrying every millisecond while the
    /// server is not listening yet (up to a second): the cold start includes nothing else.
    pub fn answers_ok(url: &str) -> bool {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        for _ in 0..1000 {
            if let Ok(mut s) = std::net::TcpStream::connect(host) {
                let _ = write!(
                    s,
                    "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                );
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    return true;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }
}

/// What the storefront's figures are compared with.
struct Ceilings<'a> {
    http: f64,
    storage: f64,
    /// The minimal server, for same-size static answers.
    hello: &'a str,
}

async fn bench_storefront(
    binary: &Path,
    dir: &Path,
    database_url: Option<&str>,
    admin_url: Option<&str>,
    args: &Args,
    ceilings: Ceilings<'_>,
) -> Outcome {
    let (http_ceiling, storage_ceiling) = (ceilings.http, ceilings.storage);
    let mut env = vec![
        (
            "STOREFRONT_DATA_DIR",
            dir.join("data").display().to_string(),
        ),
        ("STOREFRONT_LOG", "warn".to_owned()),
        ("STOREFRONT_DEMO_ACCOUNT", "false".to_owned()),
        ("STOREFRONT_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
        ("STOREFRONT_PUBLIC_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
    ];
    if let Some(url) = database_url {
        env.push(("STOREFRONT_DATABASE_URL", url.to_owned()));
    }
    let account = admin(
        binary,
        dir,
        &env,
        &[
            "create-account",
            "--email",
            "bench@example.com",
            "--name",
            "Bench",
        ],
    );
    let account_id = account["account_id"].as_str().expect("account").to_owned();
    let owner = account["api_key"].as_str().expect("key").to_owned();
    admin(
        binary,
        dir,
        &env,
        &[
            "grant-credits",
            "--account",
            &account_id,
            "--amount-minor",
            "10000000000",
            "--reason",
            "bench",
        ],
    );
    // Orders of many accounts at once: the same order as above, without every order of the run
    // waiting for one account's balance (a row each order updates; on PostgreSQL a row lock held
    // to commit, so one account's orders commit one after another).
    let many_accounts = if args.runs(MANY_ACCOUNTS) {
        eprintln!("  creating {} accounts...", args.connections);
        (0..args.connections)
            .map(|i| {
                let email = format!("bench-{i}@example.com");
                let created = admin(
                    binary,
                    dir,
                    &env,
                    &["create-account", "--email", &email, "--name", "Bench"],
                );
                let id = created["account_id"].as_str().expect("account");
                admin(
                    binary,
                    dir,
                    &env,
                    &[
                        "grant-credits",
                        "--account",
                        id,
                        "--amount-minor",
                        "10000000000",
                        "--reason",
                        "bench",
                    ],
                );
                created["api_key"].as_str().expect("key").to_owned()
            })
            .collect::<Vec<_>>()
    } else {
        Vec::new()
    };
    let cold = cold_start_ms(binary, dir, &env);
    let mut server = Server::start(binary, &env, Some(dir));
    let http = reqwest::Client::new();
    let post = |path: &str, key: &str, body: Value| {
        http.post(format!("{}{path}", server.base))
            .bearer_auth(key)
            .header("Idempotency-Key", format!("setup-{path}-{}", body))
            .json(&body)
            .send()
    };
    let agent: Value = post("/api/v1/agents", &owner, json!({"name": "bench-agent"}))
        .await
        .expect("agent")
        .json()
        .await
        .expect("json");
    let agent_id = agent["data"]["agent"]["id"]
        .as_str()
        .expect("agent id")
        .to_owned();
    let key: Value = post(
        &format!("/api/v1/agents/{agent_id}/keys"),
        &owner,
        json!({}),
    )
    .await
    .expect("key")
    .json()
    .await
    .expect("json");
    let agent_key = key["data"]["api_key"]
        .as_str()
        .expect("agent key")
        .to_owned();
    for rule in [
        json!({"kind": "per_transaction_cap", "name": "cap", "params": {"max_minor": 50000}}),
        json!({"kind": "budget", "name": "daily", "params": {"period": "day", "max_minor": 1000000}}),
        json!({"kind": "category", "name": "no gambling", "params": {"deny": ["gambling"]}}),
    ] {
        post(&format!("/api/v1/agents/{agent_id}/rules"), &owner, rule)
            .await
            .expect("rule");
    }
    let order: Value = post(
        "/api/v1/orders",
        &owner,
        json!({"product_id": "web-search", "configuration": {"query": "bench"}, "payment_method": "credit"}),
    )
    .await
    .expect("order")
    .json()
    .await
    .expect("json");
    let order_id = order["data"]["order"]["id"]
        .as_str()
        .expect("order id")
        .to_owned();

    let auth = |key: &str| format!("wrk.headers[\"Authorization\"] = \"Bearer {key}\"\n");
    let quote_body = r#"{\"product_id\":\"web-search\",\"configuration\":{\"query\":\"bench\"}}"#;
    let order_body = r#"{\"product_id\":\"web-search\",\"configuration\":{\"query\":\"bench\"},\"payment_method\":\"credit\"}"#;
    let check_body = r#"{\"action\":\"purchase\",\"transaction\":{\"amount_minor\":1200,\"currency\":\"usd\",\"merchant_name\":\"Shop\",\"merchant_domain\":\"shop.example\",\"category\":\"compute\"}}"#;
    // Catalog answers are compared with the minimal server answering a static body of the same
    // size (what HTTP alone costs for that many bytes), the two run in alternation.
    let mut same_size = Vec::new();
    for path in ["/api/v1/products", "/api/v1/products/web-search"] {
        let bytes = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .expect("catalog answers")
            .bytes()
            .await
            .expect("body")
            .len();
        same_size.push((path, format!("/bytes/{bytes}")));
    }
    let same_size_of = |path: &str| {
        same_size
            .iter()
            .find(|(answered, _)| *answered == path)
            .map(|(_, static_path)| static_path.as_str())
    };
    // Issue 19's targets: the write-heavy and per-request ones are lower on PostgreSQL, where
    // every statement is a round trip to another process.
    let on_postgres = database_url.is_some();
    let target = |sqlite: f64, postgres: f64| if on_postgres { postgres } else { sqlite };
    let scenarios: Vec<Scenario> = vec![
        ("catalog list", "/api/v1/products".into(), None, "static same-size", 0.0, 0.6),
        ("product get", "/api/v1/products/web-search".into(), None, "static same-size", 0.0, 0.6),
        (
            "quote",
            "/api/v1/quotes".into(),
            Some(format!(
                "wrk.method = \"POST\"\nwrk.body = \"{quote_body}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n{}",
                auth(&owner)
            )),
            "HTTP",
            http_ceiling,
            target(0.1, 0.05),
        ),
        (
            "credit order (unique keys)",
            "/api/v1/orders".into(),
            Some(format!(
                "local threads = 0\nfunction setup(thread) threads = threads + 1; thread:set(\"prefix\", \"t\" .. threads .. \"-\" .. os.time()) end\n\
                 local n = 0\nfunction request()\n  n = n + 1\n  return wrk.format(\"POST\", nil, {{[\"Content-Type\"] = \"application/json\", [\"Authorization\"] = \"Bearer {owner}\", [\"Idempotency-Key\"] = prefix .. \"-\" .. n}}, \"{order_body}\")\nend\n"
            )),
            "storage",
            storage_ceiling,
            target(1.5, 0.5),
        ),
        (
            MANY_ACCOUNTS,
            "/api/v1/orders".into(),
            Some(format!(
                "local keys = {{{}}}\nlocal threads = 0\nfunction setup(thread) threads = threads + 1; thread:set(\"prefix\", \"m\" .. threads .. \"-\" .. os.time()) end\n\
                 local n = 0\nfunction request()\n  n = n + 1\n  return wrk.format(\"POST\", nil, {{[\"Content-Type\"] = \"application/json\", [\"Authorization\"] = \"Bearer \" .. keys[n % #keys + 1], [\"Idempotency-Key\"] = prefix .. \"-\" .. n}}, \"{order_body}\")\nend\n",
                many_accounts
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            "storage",
            storage_ceiling,
            target(1.5, 0.5),
        ),
        (
            "order get",
            format!("/api/v1/orders/{order_id}"),
            Some(auth(&owner)),
            "HTTP",
            http_ceiling,
            target(0.15, 0.1),
        ),
        (
            "governance check",
            "/api/v1/agent/check".into(),
            Some(format!(
                "wrk.method = \"POST\"\nwrk.body = \"{check_body}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n{}",
                auth(&agent_key)
            )),
            "HTTP",
            http_ceiling,
            target(0.1, 0.05),
        ),
    ];
    let mut rows = Vec::new();
    for (name, path, script, ceiling_name, ceiling, target) in scenarios {
        if !args.runs(name) {
            continue;
        }
        eprintln!("  {name}...");
        let before = error_statuses(&http, &server.base).await;
        let log_from = log_length(dir);
        let cpu_before = server.cpu_seconds();
        let run = || {
            wrk(
                &server.base,
                &path,
                script.as_deref(),
                args.duration,
                args.connections,
            )
        };
        let (load, ceiling, round_ratios, requests) = match same_size_of(&path) {
            Some(static_path) => {
                eprintln!(
                    "    {} rounds, alternated with {static_path}",
                    args.rounds.max(1)
                );
                let static_run = || {
                    wrk(
                        ceilings.hello,
                        static_path,
                        None,
                        args.duration,
                        args.connections,
                    )
                };
                let pairs = alternated(args.rounds, static_run, run);
                let requests = pairs.iter().map(|(_, load)| load.requests).sum();
                let all_runs: Vec<Load> = pairs.iter().map(|(_, load)| load.clone()).collect();
                let median = MedianRound::of(pairs, |(ceiling, load)| ratio_of(load, ceiling));
                let (ceiling, mut load) = median.pair;
                // The errors of every round are counted and explained, not only the median's.
                load.count_errors_of(&all_runs);
                (load, ceiling.rps, median.ratios, requests)
            }
            None => {
                let load = run();
                let requests = load.requests;
                (load, ceiling, Vec::new(), requests)
            }
        };
        let cpu_us = per_request_us(server.cpu_seconds() - cpu_before, requests);
        let statuses = statuses_between(&before, &error_statuses(&http, &server.base).await);
        let rss_mb = server.rss_mb("VmRSS:");
        let logged = if load.errors > 0 {
            logged_errors(dir, log_from)
        } else {
            Vec::new()
        };
        let sample = (load.errors > 0)
            .then(|| sample_error(&server.base, &path, script.as_deref(), args.connections))
            .flatten();
        rows.push(Row {
            name: name.to_owned(),
            load,
            rss_mb,
            ceiling_name,
            ceiling,
            target,
            statuses,
            sample,
            logged,
            cpu_us,
            round_ratios,
        });
    }
    let memory_run = format!("catalog list, {} connections", args.memory_connections);
    if args.runs(&memory_run) {
        eprintln!("  memory under {} connections...", args.memory_connections);
        let cpu_before = server.cpu_seconds();
        let load = wrk(
            &server.base,
            "/api/v1/products",
            None,
            args.duration,
            args.memory_connections,
        );
        // Against the catalog list's own median ceiling, when that scenario ran.
        let ceiling = rows
            .iter()
            .find(|r| r.name == "catalog list")
            .map_or(0.0, |r| r.ceiling);
        rows.push(Row {
            name: memory_run,
            cpu_us: per_request_us(server.cpu_seconds() - cpu_before, load.requests),
            load,
            rss_mb: server.rss_mb("VmHWM:"),
            ceiling_name: "static same-size",
            ceiling,
            target: 0.6,
            statuses: Vec::new(),
            sample: None,
            logged: Vec::new(),
            round_ratios: Vec::new(),
        });
    }
    if args.preload_orders == 0 {
        return Outcome {
            rows,
            read_ceiling: 0.0,
            cold,
            scale: None,
        };
    }

    // Flat cost at scale: the reads of one account, before and after the database fills with
    // other accounts' orders.
    let sqlite_file = dir.join("data").join("storefront.db");
    let db = preload::Db::open(database_url, &sqlite_file).await;
    let middle = preload::middle_order(&db, &account_id)
        .await
        .expect("the bench account has orders");
    let reads: Vec<(&str, String)> = vec![
        ("order get", format!("/api/v1/orders/{order_id}")),
        ("orders, first page", "/api/v1/orders".into()),
        (
            "orders, deep page",
            format!("/api/v1/orders?cursor={middle}"),
        ),
        ("ledger page", "/api/v1/account/ledger".into()),
        ("balance", "/api/v1/account/balance".into()),
    ];
    let owner_auth = auth(&owner);
    // Both sides on a freshly started server over a checkpointed database: after the write
    // scenarios SQLite's write-ahead log is long, and reads that follow pay for it.
    server.stop();
    db.checkpoint().await;
    // The database as it is now is kept and served beside the preloaded one, so the two sides'
    // runs alternate instead of being minutes apart (see `--scale-rounds`).
    db.close().await;
    let before_dir = dir.join("before");
    let before_url = snapshot(dir, &before_dir, database_url, admin_url).await;
    let mut before_env = env.clone();
    set_env(
        &mut before_env,
        "STOREFRONT_DATA_DIR",
        before_dir.join("data").display(),
    );
    if let Some(url) = &before_url {
        set_env(&mut before_env, "STOREFRONT_DATABASE_URL", url);
    }
    eprintln!(
        "  preloading {} orders over {} accounts...",
        args.preload_orders, args.preload_accounts
    );
    let db = preload::Db::open(database_url, &sqlite_file).await;
    let loaded = preload::preload(
        &db,
        &account_id,
        &order_id,
        args.preload_orders,
        args.preload_accounts,
    )
    .await;
    db.checkpoint().await;
    db.close().await;
    let before_server = Server::start(binary, &before_env, Some(&before_dir));
    server = Server::start(binary, &env, Some(dir));
    let mut scale_rows = Vec::new();
    for (name, path) in &reads {
        eprintln!(
            "  {name}, {} runs before and after the preload, alternated...",
            args.rounds.max(1)
        );
        let run = |base: &str| {
            wrk(
                base,
                path,
                Some(&owner_auth),
                args.duration,
                args.connections,
            )
        };
        let pairs = alternated(
            args.rounds,
            || run(&before_server.base),
            || run(&server.base),
        );
        scale_rows.push(ScaleRow::from_rounds(name, pairs));
    }
    let scale = Scale {
        rows: scale_rows,
        loaded,
        rss_mb: server.rss_mb("VmRSS:"),
    };
    before_server.stop();
    server.stop();
    if let (Some(admin), Some(url)) = (admin_url, &before_url) {
        drop_postgres_database(admin, url).await;
    }
    Outcome {
        rows,
        read_ceiling: 0.0,
        cold,
        scale: Some(scale),
    }
}

/// The credit-order scenario spread over as many accounts as connections.
const MANY_ACCOUNTS: &str = "credit order (unique keys, one account per connection)";

/// CPU microseconds per completed request.
fn per_request_us(cpu_seconds: f64, requests: u64) -> f64 {
    if requests == 0 {
        return 0.0;
    }
    cpu_seconds * 1e6 / requests as f64
}

/// `rounds` (at least one) pairs of runs, `first` then `second` in even rounds and the other
/// way round in odd ones: alternating which goes first cancels a steady drift within a round.
fn alternated(
    rounds: u32,
    mut first: impl FnMut() -> Load,
    mut second: impl FnMut() -> Load,
) -> Vec<(Load, Load)> {
    (0..rounds.max(1))
        .map(|round| {
            if round % 2 == 0 {
                let a = first();
                (a, second())
            } else {
                let b = second();
                (first(), b)
            }
        })
        .collect()
}

/// The round whose ratio is the median of alternated pairs, with every round's ratio.
struct MedianRound {
    pair: (Load, Load),
    /// Every round's ratio, in the order they ran.
    ratios: Vec<f64>,
}

impl MedianRound {
    fn of(pairs: Vec<(Load, Load)>, ratio: impl Fn(&(Load, Load)) -> f64) -> Self {
        let ratios: Vec<f64> = pairs.iter().map(&ratio).collect();
        let mut by_ratio = pairs;
        by_ratio.sort_by(|x, y| ratio(x).total_cmp(&ratio(y)));
        Self {
            pair: by_ratio.swap_remove(by_ratio.len() / 2),
            ratios,
        }
    }
}

/// What one backend's run measured.
struct Outcome {
    rows: Vec<Row>,
    /// Point reads a second through the driver alone (filled in by the caller).
    read_ceiling: f64,
    /// Cold start, milliseconds.
    cold: f64,
    scale: Option<Scale>,
}

/// The reads of one account before and after the preload.
struct Scale {
    rows: Vec<ScaleRow>,
    loaded: preload::Preloaded,
    rss_mb: f64,
}

/// One read's alternated runs on either side of the preload.
struct ScaleRow {
    name: String,
    /// The pair whose ratio is the median: its runs are the ones printed.
    before: Load,
    after: Load,
    /// Every round's ratio (after ÷ before), in the order they ran.
    ratios: Vec<f64>,
    errors: u64,
}

impl ScaleRow {
    fn from_rounds(name: &str, pairs: Vec<(Load, Load)>) -> Self {
        let errors = pairs.iter().map(|(b, a)| b.errors + a.errors).sum();
        let median = MedianRound::of(pairs, |(before, after)| ratio_of(after, before));
        let (before, after) = median.pair;
        Self {
            name: name.to_owned(),
            before,
            after,
            ratios: median.ratios,
            errors,
        }
    }

    fn ratio(&self) -> f64 {
        ratio_of(&self.after, &self.before)
    }
}

/// `load`'s rate over `base`'s (0 when `base` did nothing).
fn ratio_of(load: &Load, base: &Load) -> f64 {
    if base.rps > 0.0 {
        load.rps / base.rps
    } else {
        0.0
    }
}

/// A copy of the run's database (and its data directory: keys and secrets) in `to`, while no
/// server has it open: SQLite's file (its log was emptied by a checkpoint) or, on PostgreSQL, a
/// new database made from it as a template. Returns the copy's database URL on PostgreSQL.
async fn snapshot(
    from: &Path,
    to: &Path,
    database_url: Option<&str>,
    admin_url: Option<&str>,
) -> Option<String> {
    copy_dir(&from.join("data"), &to.join("data"));
    let (url, admin) = (database_url?, admin_url?);
    let (_, name) = url
        .rsplit_once('/')
        .expect("a database URL names its database");
    Some(create_postgres_database(admin, &format!("{name}_before"), Some(name)).await)
}

/// Copies a directory's regular files and subdirectories; SQLite's shared-memory index is left
/// behind (a server that opens the copy makes its own).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("directory made");
    for entry in std::fs::read_dir(from).expect("directory read").flatten() {
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            copy_dir(&source, &target);
        } else if kind.is_file() && !entry.file_name().to_string_lossy().ends_with("-shm") {
            std::fs::copy(&source, &target).expect("file copied");
        }
    }
}

/// Sets `key` in a server's environment, replacing an earlier value.
fn set_env(env: &mut Vec<(&str, String)>, key: &'static str, value: impl std::fmt::Display) {
    env.retain(|(k, _)| *k != key);
    env.push((key, value.to_string()));
}

/// Ratios as printed: two decimals, comma-separated.
fn list_of_ratios(ratios: &[f64]) -> String {
    ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `storage`: the single-row commit ceiling and the one-row-updated-by-everyone ceiling.
fn print_table(backend: &str, http: &Load, storage: (f64, f64), result: &Outcome) {
    let (storage, hot_row) = storage;
    let (rows, cold) = (&result.rows, &result.cold);
    let read_ceiling = result.read_ceiling;
    println!();
    println!("### {backend}");
    println!();
    println!(
        "Ceilings: HTTP (minimal axum server) {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; storage (single-row durable commits) {storage:.0} commits/s{}; point reads through the driver, no HTTP {read_ceiling:.0}/s. Cold start (spawn to first /healthz answer, median of 5): {cold:.0} ms.",
        http.rps, http.p50_ms, http.p99_ms,
        if hot_row != storage {
            format!(", one row updated by every writer {hot_row:.0} commits/s")
        } else {
            String::new()
        }
    );
    println!();
    println!("| scenario | req/s | p50 ms | p99 ms | errors | server RSS MB | server CPU µs/req | ratio to ceiling | target |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let ratio = if r.ceiling > 0.0 {
            r.load.rps / r.ceiling
        } else {
            0.0
        };
        let rounds = if r.round_ratios.is_empty() {
            String::new()
        } else {
            format!(" (median of {})", list_of_ratios(&r.round_ratios))
        };
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.0} | {:.2} × {}{rounds} | ≥ {} × |",
            r.name,
            r.load.rps,
            r.load.p50_ms,
            r.load.p99_ms,
            r.load.errors,
            r.rss_mb,
            r.cpu_us,
            ratio,
            r.ceiling_name,
            r.target
        );
    }
    // One account's orders all update that account's row: on PostgreSQL each holds the row's
    // lock to its commit, so they are bounded by the one-row ceiling, not the insert ceiling.
    if hot_row != storage {
        if let Some(r) = rows.iter().find(|r| r.name == "credit order (unique keys)") {
            println!();
            println!(
                "One account's credit orders against the one-row ceiling ({hot_row:.0} one-statement transactions a second updating one row, as many writers as connections): {:.2} ×.",
                r.load.rps / hot_row
            );
        }
    }
    // Every error counted above, explained: wrk's kinds, the server's status codes, one answer.
    for r in rows.iter().filter(|r| r.load.errors > 0) {
        let kinds = |list: &[(String, u64)]| {
            list.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!();
        println!(
            "Errors in \"{}\": {} (wrk); server answers by status: {}; one of them (a 1 s rerun): {}",
            r.name,
            kinds(&r.load.error_kinds),
            if r.statuses.is_empty() {
                "none counted".to_owned()
            } else {
                kinds(&r.statuses)
            },
            r.sample.as_deref().unwrap_or("none reproduced")
        );
        for line in &r.logged {
            println!("- the server logged: `{}`", line.trim());
        }
    }
    if let Some(scale) = &result.scale {
        println!();
        println!(
            "#### {backend}: one account's reads with {} more orders over {} accounts (loaded in {:.0} s; each with its ledger entry and an event)",
            scale.loaded.orders,
            scale.loaded.accounts,
            scale.loaded.took.as_secs_f64()
        );
        println!();
        println!("Each read ran {} times on either side, alternated, with both servers up; the median round is shown, with every round's ratio.", scale.rows.first().map_or(0, |r| r.ratios.len()));
        println!();
        println!("| scenario | before req/s | after req/s | after p50 ms | after p99 ms | errors | ratio (rounds) | target |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for row in &scale.rows {
            let rounds = list_of_ratios(&row.ratios);
            println!(
                "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {:.2} × ({rounds}) | ≥ 0.8 × |",
                row.name,
                row.before.rps,
                row.after.rps,
                row.after.p50_ms,
                row.after.p99_ms,
                row.errors,
                row.ratio()
            );
        }
        println!();
        println!("Server RSS after the loaded reads: {:.1} MB.", scale.rss_mb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 1s test @ http://127.0.0.1:1/\n  2 threads and 4 connections\n  Latency Distribution\n     50%  120.00us\n     75%  1.50ms\n     90%    2.00ms\n     99%    1.20s\n  1000 requests in 1.00s, 1.00MB read\n  Non-2xx or 3xx responses: 7\nRequests/sec:   1234.56\n";
        let load = parse_wrk(text);
        assert_eq!(load.rps, 1234.56);
        assert_eq!(load.requests, 1000);
        assert!((load.p50_ms - 0.12).abs() < 1e-9);
        assert!((load.p99_ms - 1200.0).abs() < 1e-9);
        assert_eq!(load.errors, 7);
        assert_eq!(load.error_kinds, [("non-2xx".to_owned(), 7)]);
    }

    #[test]
    fn socket_errors_are_counted_by_kind() {
        let load =
            parse_wrk("  Socket errors: connect 0, read 12, write 0, timeout 3\nRequests/sec: 1\n");
        assert_eq!(load.errors, 15);
        assert_eq!(
            load.error_kinds,
            [("read".to_owned(), 12), ("timeout".to_owned(), 3)]
        );
    }

    #[test]
    fn alternated_rounds_swap_which_side_runs_first() {
        let order = std::cell::RefCell::new(Vec::new());
        let run = |side: &'static str| {
            let order = &order;
            move || {
                order.borrow_mut().push(side);
                Load {
                    rps: if side == "a" { 1.0 } else { 2.0 },
                    ..Load::default()
                }
            }
        };
        let pairs = alternated(3, run("a"), run("b"));
        assert_eq!(*order.borrow(), ["a", "b", "b", "a", "a", "b"]);
        assert!(
            pairs.iter().all(|(a, b)| (a.rps, b.rps) == (1.0, 2.0)),
            "each pair keeps its sides in place whichever ran first"
        );
    }

    #[test]
    fn the_errors_of_every_round_are_counted_by_kind() {
        let run = |kinds: &[(&str, u64)]| Load {
            errors: kinds.iter().map(|(_, n)| n).sum(),
            error_kinds: kinds.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            ..Load::default()
        };
        let runs = [
            run(&[("read", 2)]),
            run(&[]),
            run(&[("timeout", 1), ("read", 3)]),
        ];
        let mut median = runs[1].clone();
        median.count_errors_of(&runs);
        assert_eq!(median.errors, 6);
        assert_eq!(
            median.error_kinds,
            [("read".to_owned(), 5), ("timeout".to_owned(), 1)]
        );
    }

    #[test]
    fn the_median_round_of_a_read_is_the_one_shown() {
        let load = |rps: f64, errors: u64| Load {
            rps,
            errors,
            ..Load::default()
        };
        let pairs = vec![
            (load(100.0, 0), load(120.0, 0)),
            (load(100.0, 1), load(80.0, 0)),
            (load(200.0, 0), load(190.0, 2)),
        ];
        let row = ScaleRow::from_rounds("order get", pairs);
        assert_eq!(row.ratios, [1.2, 0.8, 0.95]);
        assert_eq!((row.before.rps, row.after.rps), (200.0, 190.0));
        assert_eq!(row.ratio(), 0.95);
        assert_eq!(row.errors, 3);
    }

    #[test]
    fn error_answers_of_a_run_are_the_difference_of_two_scrapes() {
        let before = vec![("429".to_owned(), 5)];
        let after = vec![("429".to_owned(), 30), ("400".to_owned(), 2)];
        assert_eq!(
            statuses_between(&before, &after),
            [("429".to_owned(), 25), ("400".to_owned(), 2)]
        );
    }
}
