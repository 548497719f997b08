//! The agent command line against a running server: buy with `--wait` and get credentials, the
//! documented exit codes, `--json` output for scripts.

mod common;

use common::machines::image_dir;
use common::{Backend, TestServer};
use serde_json::Value;

async fn cli(s: &TestServer, key: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_storefront"));
    command
        .env_clear()
        .env("STOREFRONT_URL", &s.base)
        .args(args)
        .kill_on_drop(true);
    if let Some(k) = key {
        command.env("STOREFRONT_API_KEY", k);
    }
    let out = command.output().await.expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

dual_test!(buy_with_wait_prints_the_fulfilled_order_and_its_credentials);
async fn buy_with_wait_prints_the_fulfilled_order_and_its_credentials(backend: Backend) {
    let s = TestServer::start(&backend).await;
    s.start_worker();
    let (_, key) = s.account(10_000).await;
    let machines = image_dir().is_some();
    let args: Vec<&str> = if machines {
        vec![
            "buy",
            "bare-linux-machine",
            "--set",
            "duration_minutes=15",
            "--wait",
            "--json",
        ]
    } else {
        vec![
            "buy",
            "web-search",
            "--set",
            "query=linux",
            "--wait",
            "--json",
        ]
    };
    let (code, stdout, stderr) = cli(&s, Some(&key), &args).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let answer: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    assert_eq!(answer["order"]["status"], "fulfilled");
    let balance = s.balance(&key).await;
    assert_eq!(
        balance,
        10_000 - answer["order"]["total_minor"].as_i64().unwrap()
    );
    if machines {
        let credentials = &answer["credentials"]["credentials"];
        assert!(credentials["port"].as_u64().is_some(), "{answer}");
        assert!(credentials["private_key"]
            .as_str()
            .unwrap()
            .contains("OPENSSH PRIVATE KEY"));
        // `ssh` opens a session with those credentials.
        let service = answer["order"]["service_id"].as_str().unwrap();
        let (code, stdout, stderr) = cli(
            &s,
            Some(&key),
            &["ssh", service, "--", "cat", "/etc/hostname"],
        )
        .await;
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert!(!stdout.trim().is_empty());
        // The host key is pinned, not trusted on first use: give the machine's sshd another key
        // (as a machine in the middle would have) and `ssh` refuses it with an explanation.
        let (code, stdout, stderr) = cli(
            &s,
            Some(&key),
            &[
                "ssh",
                service,
                "--",
                "rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && kill -HUP 1 && echo swapped",
            ],
        )
        .await;
        assert_eq!((code, stdout.trim()), (0, "swapped"), "{stderr}");
        // sshd re-executes itself on SIGHUP: until it listens again, connections are refused.
        let mut refusal = String::new();
        for _ in 0..100 {
            let (code, _, stderr) = cli(&s, Some(&key), &["ssh", service, "--", "true"]).await;
            assert_ne!(code, 0, "a server with another host key must be refused");
            if stderr.contains("host key other than") {
                assert_eq!(code, 1, "{stderr}");
                refusal = stderr;
                break;
            }
        }
        let fingerprint = credentials["host_key_fingerprint"].as_str().unwrap();
        assert!(
            refusal.contains(fingerprint),
            "the refusal names the recorded key: {refusal}"
        );
    }
    let (code, stdout, _) = cli(&s, Some(&key), &["balance", "--json"]).await;
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["balance_minor"], balance);
}

dual_test!(exit_codes_say_refused_unreachable_and_usage);
async fn exit_codes_say_refused_unreachable_and_usage(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(0).await;
    let (code, _, stderr) = cli(&s, Some(&key), &["buy", "web-search", "--set", "query=x"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("insufficient_credits"), "{stderr}");
    assert!(
        stderr.contains("hint:"),
        "the suggestion is printed: {stderr}"
    );
    let (code, stdout, _) = cli(&s, Some(&key), &["credentials", "svc_nope", "--json"]).await;
    assert_eq!(code, 1);
    let error: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(error["error"]["code"], "not_found");
    let (code, _, _) = cli(&s, None, &["balance"]).await;
    assert_eq!(code, 1, "no key: unauthorized");
    let (code, _, _) = cli(&s, Some(&key), &["buy", "--bogus"]).await;
    assert_eq!(code, 2, "usage errors");
    let (code, _, stderr) = cli(&s, Some(&key), &["quote", "web-search", "--set", "query"]).await;
    assert_eq!(code, 2, "a malformed --set is wrong usage too: {stderr}");
    assert!(stderr.contains("NAME=VALUE"), "{stderr}");
    let (code, _, _) = cli(&s, Some(&key), &["buy", "--set", "query=x"]).await;
    assert_eq!(code, 2, "buy without a product or a quote");
    let mut unreachable = tokio::process::Command::new(env!("CARGO_BIN_EXE_storefront"));
    let out = unreachable
        .env_clear()
        .args(["--url", "http://127.0.0.1:1", "products"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

dual_test!(a_reader_that_goes_away_ends_the_command_quietly);
async fn a_reader_that_goes_away_ends_the_command_quietly(backend: Backend) {
    let s = TestServer::start(&backend).await;
    // `storefront products | head -0`: the pipe is closed before anything is written.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_storefront"))
        .env_clear()
        .env("STOREFRONT_URL", &s.base)
        .arg("products")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

dual_test!(people_get_tables_warnings_a_strict_mode_and_a_private_key_file);
async fn people_get_tables_warnings_a_strict_mode_and_a_private_key_file(backend: Backend) {
    let s = TestServer::start(&backend).await;
    s.start_worker();
    let (_, key) = s.account(10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_storefront"));
        command
            .env_clear()
            .env("STOREFRONT_URL", &s.base)
            .env("STOREFRONT_API_KEY", &key)
            .current_dir(dir.path())
            .args(args)
            .kill_on_drop(true);
        async move {
            let out = command.output().await.expect("the binary runs");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };

    // A value out of range is normalized: the warning is printed, and --strict buys nothing.
    let (code, _, stderr) = run(&[
        "buy",
        "web-search",
        "--set",
        "query=x",
        "--set",
        "max_results=99",
        "--strict",
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("warning: max_results"), "{stderr}");
    assert!(stderr.contains("nothing was bought"), "{stderr}");
    assert_eq!(s.balance(&key).await, 10_000);
    let (code, stdout, stderr) = run(&[
        "buy",
        "web-search",
        "--set",
        "query=x",
        "--set",
        "max_results=99",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("warning: max_results"), "{stderr}");
    let header = stdout.lines().next().unwrap_or_default();
    for column in ["ID", "PRODUCT", "STATUS", "PRICE"] {
        assert!(header.contains(column), "a table header: {stdout}");
    }
    assert!(
        !stdout.contains('\u{1b}'),
        "no colour codes in a pipe: {stdout:?}"
    );

    let (code, stdout, _) = run(&["orders"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID")
            && lines[1].contains("web-search")
            && lines[1].contains("fulfilled"),
        "{stdout}"
    );

    if image_dir().is_none() {
        return;
    }
    let (code, stdout, stderr) = run(&[
        "buy",
        "bare-linux-machine",
        "--set",
        "duration_minutes=15",
        "--wait",
    ])
    .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("PRIVATE KEY"),
        "the key is not printed: {stdout}"
    );
    let saved = stdout
        .lines()
        .find_map(|l| l.strip_prefix("private key saved to "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("the key file is named: {stdout}"));
    let path = dir.path().join(saved);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("OPENSSH PRIVATE KEY"));
    let service = saved.trim_end_matches(".key");

    let (code, stdout, _) = run(&["services"]).await;
    assert_eq!(code, 0);
    assert!(stdout.lines().next().unwrap().starts_with("ID"), "{stdout}");
    assert!(
        stdout.contains(service) && stdout.contains("active"),
        "{stdout}"
    );

    // Actions wait too: restart until active again, terminate until terminated.
    let (code, stdout, stderr) = run(&["restart", service, "--wait"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("active"), "{stdout}");
    let (code, stdout, stderr) = run(&["credentials", service, "--print-key"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("OPENSSH PRIVATE KEY"),
        "--print-key prints it"
    );
    let (code, stdout, stderr) = run(&["terminate", service, "--wait"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("terminated"), "{stdout}");
}

dual_test!(events_are_listed_and_followed_as_they_happen);
async fn events_are_listed_and_followed_as_they_happen(backend: Backend) {
    use tokio::io::AsyncBufReadExt;
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(10_000).await;
    let search = serde_json::json!({"product_id": "web-search", "configuration": {"query": "x"}});
    let bought = s.order(Some(&key), "cli-events-1", &search).await;
    assert_eq!(bought.status, 201, "{:?}", bought.body);

    let (code, stdout, stderr) = cli(&s, Some(&key), &["events", "--type", "order.paid"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("order.paid"), "{stdout}");

    // --follow --json: the log so far, then each new event as a JSON line.
    let mut follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_storefront"));
    let mut child = follow
        .env_clear()
        .env("STOREFRONT_URL", &s.base)
        .env("STOREFRONT_API_KEY", &key)
        .args(["events", "--follow", "--json"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    async fn next(
        lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    ) -> Value {
        let line = tokio::time::timeout(common::binary::GUARD, lines.next_line())
            .await
            .expect("a line within the guard")
            .unwrap()
            .expect("the command still runs");
        serde_json::from_str::<Value>(&line).expect("one JSON object a line")
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next(&mut lines).await["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["order.created", "order.paid", "order.fulfilled"]);
    let again = s.order(Some(&key), "cli-events-2", &search).await;
    let order = again.body["data"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for expected in ["order.created", "order.paid", "order.fulfilled"] {
        let event = next(&mut lines).await;
        assert_eq!(event["type"], expected);
        assert_eq!(event["data"]["id"], order.as_str());
    }
    drop(lines);
    child.kill().await.unwrap();
}
