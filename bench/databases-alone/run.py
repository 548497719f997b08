#!/usr/bin/env python3
"""Each database alone, writing credit orders: the rows of one order as the store writes them
(order.json), with no storefront in front, so the storefront's own rate can be read against
what the database itself does with the same rows on the same machine.

- SQLite: one writer (this process), a savepoint per order and one durable commit per batch, as
  the store's group commit does (WAL, synchronous=FULL, temp_store=memory, a background
  checkpoint every 20 ms). Its CPU per order includes Python's own work, so it overstates what
  SQLite spends.
- PostgreSQL (when a URL is given): pgbench with the order's one statement between BEGIN and
  COMMIT, as the store sends it, from 8, 16 and 64 clients. Its CPU per order is the machine's
  busy time (all processes) less pgbench's own.

Both run for one account (every order debits the same balance row) and for 64 accounts (one per
connection; for SQLite, orders of a batch round-robin over them). The schemas are the store's own:
the storefront binary creates each database (`admin create-account`).

Then PostgreSQL reads one account's pages of orders alone (its first page and a deep one, as the
store asks for them, after 20,000 of its orders written by the order's statement), from 16 and
64 pgbench clients: pages a second, PostgreSQL's CPU per page and the latency percentiles, to
read the storefront's page latency against (`--only-pages` runs this part alone).

    python3 bench/databases-alone/run.py --storefront target/release/storefront \
        [--postgres postgres://postgres@127.0.0.1:5432/test] [--seconds 8] [--only-pages]
"""

import argparse
import contextlib
import json
import os
import pathlib
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
ORDER = json.loads((HERE / "order.json").read_text())
ACCOUNTS = 64


# The ids each order makes its own (order.json's `unique`, the account aside): a prefix and a
# suffix around the order's number.
OWN_IDS = {
    "key": ("bench-", ""),
    "quote": ("qt_bench", ""),
    "order": ("ord_bench", ""),
    "ledger_entry": ("led_bench", ""),
    "event_1": ("evt_bench", "_1"),
    "event_2": ("evt_bench", "_2"),
    "event_3": ("evt_bench", "_3"),
}
# The bench accounts' ids: this and a number from 0.
ACCOUNT_PREFIX = "acct_bench"


def by_index(own: dict) -> dict:
    """What stands for each of the order's own values, by its 1-based index in postgres_values."""
    return {i: own[name] for name, indexes in ORDER["unique"].items() for i in indexes}


def unique_values(n: int, account: str) -> list:
    """The order's values (PostgreSQL's order, 0-based) with this order's own ids."""
    own = {name: f"{prefix}{n}{suffix}" for name, (prefix, suffix) in OWN_IDS.items()}
    values = list(ORDER["postgres_values"])
    for i, value in by_index(own | {"account": account}).items():
        values[i - 1] = value
    return values


def storefront_database(binary: str, data_dir: pathlib.Path, database_url: str | None) -> str:
    """Creates the store's schema (and one account) through the storefront itself; returns the
    account row's id, the template of the bench accounts."""
    env = dict(os.environ, STOREFRONT_DATA_DIR=str(data_dir), STOREFRONT_LOG="warn")
    env.pop("STOREFRONT_DATABASE_URL", None)
    if database_url:
        env["STOREFRONT_DATABASE_URL"] = database_url
    out = subprocess.run(
        [binary, "admin", "create-account", "--email", "template@example.com", "--name", "Bench", "--json"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["account_id"]


def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def sqlite_alone(binary: str, seconds: float, spread: bool, batch: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp)
        template = storefront_database(binary, data, None)
        path = data / "storefront.db"
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "temp_store=memory", "wal_autocheckpoint=10000"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("BEGIN")
        for i in range(ACCOUNTS):
            conn.execute(
                "INSERT INTO accounts (id, email, name, currency, balance_minor, created_at, updated_at) "
                "SELECT ?, ?, name, currency, 1000000000000, created_at, updated_at FROM accounts WHERE id = ?",
                (f"{ACCOUNT_PREFIX}{i}", f"bench{i}@example.com", template),
            )
        conn.execute("COMMIT")
        statements = ORDER["sqlite_statements"]
        counts = [s.count("?") for s in statements]
        order = [i - 1 for i in ORDER["sqlite_values"]]
        stop = threading.Event()

        def checkpoints() -> None:
            background = sqlite3.connect(path, isolation_level=None)
            while not stop.is_set():
                background.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                time.sleep(0.02)
            background.close()

        checkpointer = threading.Thread(target=checkpoints)
        checkpointer.start()
        n = 0
        cpu = time.process_time()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.execute("BEGIN IMMEDIATE")
            for unit in range(batch):
                account = f"{ACCOUNT_PREFIX}{unit % ACCOUNTS if spread else 0}"
                values = unique_values(n, account)
                args = [values[i] for i in order]
                conn.execute("SAVEPOINT unit")
                at = 0
                for statement, count in zip(statements, counts):
                    conn.execute(statement, args[at:at + count]).fetchall()
                    at += count
                n += 1
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        stop.set()
        checkpointer.join()
        orders, entries = conn.execute(
            "SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM ledger_entries)"
        ).fetchone()
        assert orders == n and entries == n, f"{n} orders written, {orders} orders and {entries} entries stored"
        conn.close()
        return n / elapsed, cpu / n * 1e6


def pgbench_script(spread: bool) -> str:
    """The order's statement with its values inline, pgbench variables for what each order makes
    its own (`:n` a random number, `:a` the account's number)."""
    values = ORDER["postgres_values"]
    own = {
        name: f"('{prefix}' || :n::text" + (f" || '{suffix}')" if suffix else ")")
        for name, (prefix, suffix) in OWN_IDS.items()
    }
    literal = by_index(own | {"account": f"('{ACCOUNT_PREFIX}' || :a::text)"})

    def sql(i: int) -> str:
        if i in literal:
            return literal[i]
        v = values[i - 1]
        if v is None:
            return "NULL"
        # pgbench reads `:name` anywhere as a variable, JSON included: a space after each
        # `":` keeps the JSON the same value without looking like one.
        return "'" + v.replace("'", "''").replace('":', '": ') + "'"

    statement = re.sub(r"\$(\d+)\b", lambda m: sql(int(m.group(1))), ORDER["postgres_statement"])
    account = "\\set a :client_id" if spread else "\\set a 0"
    return f"{account}\n\\set n random(1, 9000000000000000)\nBEGIN;\n{statement};\nCOMMIT;\n"


@contextlib.contextmanager
def postgres_database(binary: str, admin_url: str):
    """A new database with the store's schema and the bench accounts (`acct_bench0`...); its URL
    and a scratch directory. Dropped afterwards."""
    name = f"sf_alone_{os.getpid()}"
    base = admin_url.rsplit("/", 1)[0]
    psql = ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", admin_url]
    subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {name}", "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True)
    url = f"{base}/{name}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            template = storefront_database(binary, pathlib.Path(tmp), url)
            subprocess.run(
                ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", url, "-c",
                 "INSERT INTO accounts (id, email, name, currency, balance_minor, created_at, updated_at) "
                 f"SELECT '{ACCOUNT_PREFIX}' || i, 'bench' || i || '@example.com', name, currency, 1000000000000, "
                 f"created_at, updated_at FROM accounts, generate_series(0, {ACCOUNTS - 1}) i WHERE id = '{template}'"],
                check=True, capture_output=True,
            )
            yield url, pathlib.Path(tmp)
    finally:
        subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {name}"], capture_output=True)


def pgbench(url: str, script: pathlib.Path, clients: int, *limit: str, log: pathlib.Path | None = None):
    """Runs pgbench (`limit`: `-T seconds` or `-t transactions`); the transactions it processed,
    PostgreSQL's CPU seconds (the machine's busy time less pgbench's), and with `log` the
    transactions' latencies in µs."""
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy_seconds()
    logging = ["-l", "--log-prefix", str(log / "tx")] if log else []
    run = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2", *limit, *logging,
         "-f", str(script), url],
        capture_output=True, text=True,
    )
    busy = machine_busy_seconds() - busy
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        sys.exit(f"pgbench failed:\n{run.stderr}")
    processed = next(line for line in run.stdout.splitlines() if "actually processed" in line)
    n = int(processed.split(":")[1].split("/")[0])
    pgbench_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime)
    latencies = []
    if log:
        # One line per transaction: client, number, latency (µs), script, epoch, µs.
        for path in log.glob("tx*"):
            latencies += [int(line.split()[2]) for line in path.read_text().splitlines()]
            path.unlink()
    return n, busy - pgbench_cpu, sorted(latencies)


def postgres_alone(binary: str, admin_url: str, seconds: float, spread: bool, clients: int) -> tuple[float, float]:
    with postgres_database(binary, admin_url) as (url, tmp):
        script = tmp / "order.sql"
        script.write_text(pgbench_script(spread))
        n, cpu, _ = pgbench(url, script, clients, "-T", str(int(seconds)))
        return n / seconds, cpu / n * 1e6


# One account's pages of orders as the store reads them on PostgreSQL (`db::ACCOUNT_PAGE`, a page
# of 20 read as 21 rows; captured with `log_statement = all`): the first page, and a deep one
# below a cursor.
FIRST_PAGE = ("SELECT * FROM orders WHERE account_id BETWEEN :acct AND :acct "
              "ORDER BY account_id DESC, id DESC LIMIT 21")
DEEP_PAGE = ("SELECT * FROM orders WHERE account_id BETWEEN :acct AND :acct AND id < :cursor "
             "ORDER BY account_id DESC, id DESC LIMIT 21")


def postgres_pages_alone(binary: str, admin_url: str, seconds: float, orders: int,
                         clients: tuple[int, ...]) -> list[tuple[str, int, float, float, int, int, int]]:
    """One account's pages of orders read by pgbench alone, after `orders` of its credit orders
    (written by the order's own statement): for each page and number of clients, the pages a
    second, PostgreSQL's CPU per page, and the median, 99th percentile and worst latency (µs)."""
    results = []
    with postgres_database(binary, admin_url) as (url, tmp):
        script = tmp / "order.sql"
        script.write_text(pgbench_script(spread=False))
        pgbench(url, script, 8, "-t", str(orders // 8))
        subprocess.run(["psql", "-q", "-X", url, "-c", "VACUUM ANALYZE"], check=True, capture_output=True)
        middle = subprocess.run(
            ["psql", "-q", "-X", "-A", "-t", url, "-c",
             f"SELECT id FROM orders WHERE account_id = '{ACCOUNT_PREFIX}0' ORDER BY id "
             f"OFFSET (SELECT COUNT(*) / 2 FROM orders WHERE account_id = '{ACCOUNT_PREFIX}0') LIMIT 1"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        for page, sql in (("first page", FIRST_PAGE), ("deep page", DEEP_PAGE)):
            sql = sql.replace(":acct", f"'{ACCOUNT_PREFIX}0'").replace(":cursor", f"'{middle}'")
            script = tmp / "page.sql"
            script.write_text(f"{sql};\n")
            for n_clients in clients:
                n, cpu, latencies = pgbench(url, script, n_clients, "-T", str(int(seconds)), log=tmp)
                pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
                results.append((page, n_clients, n / seconds, cpu / n * 1e6,
                                pick(0.5), pick(0.99), latencies[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storefront", required=True, help="the storefront binary (creates the schemas)")
    parser.add_argument("--postgres", default=os.environ.get("STOREFRONT_TEST_POSTGRES_URL"),
                        help="an administrative PostgreSQL URL (default: $STOREFRONT_TEST_POSTGRES_URL)")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--page-orders", type=int, default=20_000,
                        help="one account's orders before its pages are read (PostgreSQL)")
    parser.add_argument("--only-pages", action="store_true", help="PostgreSQL's pages alone, nothing else")
    args = parser.parse_args()
    if args.only_pages:
        return pages(args)
    print(f"SQLite {sqlite3.sqlite_version} (Python's), one writer, savepoint per order, "
          f"one commit per batch, synchronous=FULL")
    for spread in (False, True):
        for batch in (32, 64):
            rate, cpu = sqlite_alone(args.storefront, args.seconds, spread, batch)
            who = f"{ACCOUNTS} accounts" if spread else "one account"
            print(f"  {who:<21} batches of {batch}: {rate:8,.0f} orders/s, {cpu:4.0f} µs CPU/order (Python's included)")
    if not args.postgres:
        print("PostgreSQL: skipped (no --postgres or STOREFRONT_TEST_POSTGRES_URL)")
        return
    if shutil.which("pgbench") is None:
        sys.exit("pgbench is not installed (Debian: postgresql-client)")
    print("PostgreSQL, pgbench -M prepared: BEGIN; the order's statement; COMMIT")
    for spread in (False, True):
        for clients in (8, 16, 64):
            rate, cpu = postgres_alone(args.storefront, args.postgres, args.seconds, spread, clients)
            who = "an account per client" if spread else "one account"
            print(f"  {who:<21} {clients:2} clients: {rate:8,.0f} orders/s, {cpu:4.0f} µs CPU/order (PostgreSQL's)")
    pages(args)


def pages(args) -> None:
    if not args.postgres:
        print("PostgreSQL: skipped (no --postgres or STOREFRONT_TEST_POSTGRES_URL)")
        return
    print(f"PostgreSQL, pgbench -M prepared: one account's page of orders, after {args.page_orders:,} of its orders")
    for page, clients, rate, cpu, p50, p99, worst in postgres_pages_alone(
            args.storefront, args.postgres, args.seconds, args.page_orders, (16, 64)):
        print(f"  {page:<10} {clients:2} clients: {rate:8,.0f} pages/s, {cpu:4.0f} µs CPU/page (PostgreSQL's), "
              f"latency p50 {p50 / 1000:.1f} ms, p99 {p99 / 1000:.1f} ms, worst {worst / 1000:.1f} ms")


if __name__ == "__main__":
    main()
