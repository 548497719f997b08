//! Running the built `storefront` binary from tests.

use super::Backend;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_storefront");
/// A guard against a hung child, not a timing assumption: every wait below normally ends in
/// milliseconds.
pub const GUARD: Duration = Duration::from_secs(60);

/// The binary in `dir`, on the test's database (`None`: the default SQLite file in ./data).
pub fn storefront(dir: &Path, db: Option<&str>) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear();
    if let Some(url) = db {
        c.env("STOREFRONT_DATABASE_URL", url);
    }
    c.current_dir(dir)
        .env("STOREFRONT_LOG", "warn")
        .kill_on_drop(true);
    c
}

pub async fn admin(dir: &Path, db: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let out = storefront(dir, db)
        .arg("admin")
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// An account made with the admin commands, with `credits`: (account id, owner key).
pub async fn admin_account(
    dir: &Path,
    db: Option<&str>,
    email: &str,
    credits: i64,
) -> (String, String) {
    let (ok, out, err) = admin(
        dir,
        db,
        &[
            "create-account",
            "--email",
            email,
            "--name",
            "Test",
            "--json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let account = created["account_id"].as_str().unwrap().to_owned();
    let key = created["api_key"].as_str().unwrap().to_owned();
    let amount = credits.to_string();
    let (ok, _, err) = admin(
        dir,
        db,
        &[
            "grant-credits",
            "--account",
            &account,
            "--amount-minor",
            &amount,
            "--reason",
            "test",
        ],
    )
    .await;
    assert!(ok, "{err}");
    (account, key)
}

/// The test's database: `None` keeps the binary's default (a SQLite file in ./data), so the
/// embedded default is what the SQLite runs exercise.
pub async fn database(backend: &Backend, dir: &Path) -> Option<String> {
    match backend {
        Backend::Sqlite => None,
        Backend::Postgres { .. } => Some(backend.fresh_database_url(dir).await),
    }
}

pub struct Running {
    pub child: Child,
    pub lines: Lines<BufReader<ChildStdout>>,
    pub base: String,
}

pub async fn start(dir: &Path, db: Option<&str>, extra: &[&str]) -> Running {
    let mut child = storefront(dir, db)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(GUARD, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the server prints its address");
            if let Some(url) = line.strip_prefix("Storefront is serving on ") {
                return url.trim().to_owned();
            }
            // A worker-only process serves no HTTP: it has no address.
            if line.starts_with("Storefront worker ") {
                return String::new();
            }
        }
    })
    .await
    .expect("server starts");
    Running { child, lines, base }
}

pub async fn next_line_containing(r: &mut Running, needle: &str) -> String {
    tokio::time::timeout(GUARD, async {
        loop {
            let line = r
                .lines
                .next_line()
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("no line with {needle}"));
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
    .expect("line arrives")
}

pub async fn terminate(mut r: Running) -> std::process::ExitStatus {
    let pid = r.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::timeout(GUARD, r.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap()
}

/// `GET url` (with a key, when given), as JSON.
pub async fn get_json(http: &reqwest::Client, url: &str, key: Option<&str>) -> serde_json::Value {
    let mut req = http.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// Polls an order of a running server until `done` holds for it (a real system settling; `GUARD`
/// bounds it); returns the order.
pub async fn poll_order(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let body = get_json(http, &format!("{base}/api/v1/orders/{id}"), Some(key)).await;
        let order = &body["data"]["order"];
        if done(order) {
            return order.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {id} never settled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
