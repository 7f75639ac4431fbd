"""Benchmark the AOL engine against django-tasks-db, Procrastinate and a raw psycopg floor.

``make bench`` (or ``bench/.venv/bin/python bench/run.py [--quick]``). Creates its own databases
``aicmo_bench_*`` (the prefix is ``$AICMO_BENCH_DB_PREFIX`` if set) on the local PostgreSQL (dropped
and recreated on every run) and SQLite files under bench/var/, runs every scenario one after the
other, prints a table of figures, ratios and targets, and writes it to bench/results/latest.md.
See bench/README.md.
"""

import argparse
import importlib.metadata
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from bench.api import scenario_api  # noqa: E402
from bench.lib import (  # noqa: E402
    BENCH,
    ROOT,
    VAR,
    Database,
    aol_payload,
    django_env,
    job,
    log_path,
    manage,
    percentile,
    start,
    steady_rate,
    to_epoch,
    wait_for,
)

SIZES = {
    "full": {
        "n": 10_000,
        "round_trip_n": 2_000,
        "memory_n": 100_000,
        "idle_seconds": 60.0,
        "latency_samples": 200,
        "control_trials": 20,
        "console_actions": 1_000_000,
        "console_logs": 1_000_000,
        "console_ticks": 100_000,
        "console_requests": 50,
    },
    "quick": {
        "n": 500,
        "round_trip_n": 300,
        "memory_n": 0,
        "idle_seconds": 10.0,
        "latency_samples": 6,
        "control_trials": 4,
        "console_actions": 100_000,
        "console_logs": 100_000,
        "console_ticks": 10_000,
        "console_requests": 15,
    },
}
SCENARIOS = ("drain", "drain-store", "peers", "enqueue", "idle", "latency", "controls", "console", "api")
PEER_SETTINGS = "bench.peer_settings"
#: Every database the run makes starts with this; AICMO_BENCH_DB_PREFIX lets two runs share a server.
DB_PREFIX = os.environ.get("AICMO_BENCH_DB_PREFIX", "aicmo_bench")
APP_TEMPLATE = f"{DB_PREFIX}_template"
PEER_TEMPLATE = f"{DB_PREFIX}_peers_template"
DTDB_TABLE = "django_tasks_database_dbtaskresult"
UNFINISHED = "('PENDING', 'READY', 'RUNNING', 'RETRY')"


@dataclass
class Row:
    scenario: str
    measure: str
    figure: str
    target: str = ""
    met: bool | None = None


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def add(self, scenario: str, measure: str, figure: str, target: str = "", met: bool | None = None) -> None:
        row = Row(scenario, measure, figure, target, met)
        self.rows.append(row)
        verdict = "" if met is None else ("  met" if met else "  MISSED")
        print(f"  {measure}: {figure}{'  (target ' + target + ')' if target else ''}{verdict}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)


def rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else math.nan


def fmt_rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}/s"


def fmt_ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:,.1f} ms"


def fmt_ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


class Bench:
    """The run: sizes, databases, artifact folders, results."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.mode = "quick" if args.quick else "full"
        self.size = SIZES[self.mode]
        if args.n:
            self.size["n"] = args.n
        self.base_url = args.postgres.rstrip("/")
        self.admin = Database(f"{self.base_url}/postgres")
        self.results = Results()
        self.batch = args.drain_batch

    # --- databases ---------------------------------------------------------------------------------

    def pg_url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def drop(self, name: str) -> None:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def pg_database(self, name: str, *, template: str | None = APP_TEMPLATE) -> str:
        """A fresh database ``aicmo_bench_<name>``, a copy of a migrated template."""
        full = f"{DB_PREFIX}_{name}"
        self.drop(full)
        self.admin.execute(f'CREATE DATABASE "{full}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.pg_url(full)

    def sqlite_database(self, name: str) -> str:
        path = VAR / "sqlite" / f"{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(VAR / "sqlite" / "template.sqlite3", path)
        return f"sqlite:///{path}"

    def artifacts(self, name: str) -> Path:
        path = VAR / "artifacts" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def prepare(self) -> None:
        """Drop what an earlier run left, then migrate the templates once."""
        for (name,) in self.admin.rows("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{DB_PREFIX}\\_%"]):
            self.drop(name)
        shutil.rmtree(VAR, ignore_errors=True)
        (VAR / "sqlite").mkdir(parents=True)
        artifacts = self.artifacts("migrate")
        self.admin.execute(f'CREATE DATABASE "{APP_TEMPLATE}"')
        self.admin.execute(f'CREATE DATABASE "{PEER_TEMPLATE}"')
        manage(["migrate", "--noinput"], django_env(self.pg_url(APP_TEMPLATE), artifacts=artifacts), log="migrate")
        manage(
            ["migrate", "--noinput"],
            django_env(self.pg_url(PEER_TEMPLATE), artifacts=artifacts, settings=PEER_SETTINGS),
            log="migrate",
        )
        sqlite_template = f"sqlite:///{VAR / 'sqlite' / 'template.sqlite3'}"
        manage(["migrate", "--noinput"], django_env(sqlite_template, artifacts=artifacts), log="migrate")

    def cleanup(self) -> None:
        if self.args.keep:
            return
        for (name,) in self.admin.rows("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{DB_PREFIX}\\_%"]):
            self.drop(name)
        shutil.rmtree(VAR / "artifacts", ignore_errors=True)
        shutil.rmtree(VAR / "sqlite", ignore_errors=True)

    # --- AOL helpers ---------------------------------------------------------------------------------

    def enqueue_file(self, env: dict, n: int, *, prefix: str, log: str) -> None:
        """Queue ``n`` due POST_SOCIAL actions through ``aol_enqueue --from-file``."""
        path = VAR / f"{prefix}.jsonl"
        with open(path, "w") as out:
            for i in range(n):
                item = {"action_type": "POST_SOCIAL", "payload": aol_payload(i), "idempotency_key": f"{prefix}-{i:07d}"}
                out.write(json.dumps(item) + "\n")
        manage(["aol_enqueue", "--from-file", str(path)], env, log=log)
        path.unlink()

    def drain_args(self) -> list[str]:
        """run_aol_daemon with its limits lifted through its own options."""
        return [
            "run_aol_daemon",
            "--proof",
            "--max-actions",
            str(self.batch),
            "--interval",
            "0.01",
            "--max-tick-seconds",
            "3600",
        ]


def stop(process: subprocess.Popen, timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
    return process.returncode


def wait_drained(db: Database, process: subprocess.Popen, *, n: int, log: str) -> None:
    def drained():
        if process.poll() is not None:
            raise RuntimeError(f"the daemon exited early ({process.returncode}); see {log_path(log)}")
        return db.scalar(f"SELECT count(*) FROM aol_actions WHERE status IN {UNFINISHED}") == 0

    wait_for(drained, timeout=max(120, n / 20), what=f"{n} actions drained")


def action_done_times(db: Database, *, skip: int = 0) -> list[float]:
    """When each action finished (its execution log), in log order, leaving out the first ``skip``."""
    sql = "SELECT ts FROM aol_execution_logs WHERE action_id IS NOT NULL ORDER BY id LIMIT -1 OFFSET %s"
    if not db.sqlite:
        sql = sql.replace("LIMIT -1 ", "")
    return [to_epoch(ts) for (ts,) in db.rows(sql, (skip,))]


# --- 1. Drain -------------------------------------------------------------------------------------


def drain_aol(bench: Bench, url: str, label: str, *, memory: bool = False, store: str = "files") -> dict:
    """N due actions, one daemon process: wall from process start to last action done, steady rate."""
    n = bench.size["n"]
    db = Database(url)
    env = django_env(url, artifacts=bench.artifacts(label), AOL_ARTIFACT_STORE=store)
    bench.enqueue_file(env, n, prefix=label, log=f"{label}-enqueue")
    started = time.time()
    daemon = start(["manage.py", *bench.drain_args()], env, log=label)
    try:
        wait_drained(db, daemon, n=n, log=label)
        done = action_done_times(db)
        succeeded = db.scalar("SELECT count(*) FROM aol_actions WHERE status = 'SUCCESS'")
        result = {
            "n": n,
            "wall": max(done) - started,
            "steady": steady_rate(done),
            "succeeded": succeeded,
            "rss_n": psutil.Process(daemon.pid).memory_info().rss,
        }
        if memory and bench.size["memory_n"] > n:
            more = bench.size["memory_n"] - n
            bench.enqueue_file(env, more, prefix=f"{label}-more", log=f"{label}-enqueue")
            wait_drained(db, daemon, n=more, log=label)
            result["rss_memory_n"] = psutil.Process(daemon.pid).memory_info().rss
            result["steady_memory_n"] = steady_rate(action_done_times(db, skip=n))
    finally:
        stop(daemon)
        db.close()
    return result


def round_trips(bench: Bench, url: str, label: str) -> dict:
    """Statements and transactions per action, from a counted daemon draining a smaller batch."""
    n = bench.size["round_trip_n"]
    db = Database(url)
    counts_file = VAR / f"{label}-counts.json"
    env = django_env(url, artifacts=bench.artifacts(label), BENCH_COUNTS_FILE=str(counts_file))
    bench.enqueue_file(env, n, prefix=label, log=f"{label}-enqueue")
    daemon = start(["bench/counted_manage.py", *bench.drain_args()], env, log=label)
    try:
        wait_drained(db, daemon, n=n, log=label)
    finally:
        stop(daemon)
        db.close()
    counts = json.loads(counts_file.read_text())
    transactions = counts["commits"] + counts["rollbacks"]
    begins_sent = sum(v for kind, v in counts["statements_by_kind"].items() if kind.upper().startswith("BEGIN"))
    round_trips = counts["statements"] + transactions + max(0, transactions - begins_sent)
    top = sorted(counts["statements_by_kind"].items(), key=lambda item: -item[1])[:6]
    return {
        "n": n,
        "statements": counts["statements"] / n,
        "transactions": transactions / n,
        "round_trips": round_trips / n,
        "top": ", ".join(f"{v / n:.2f} {kind}" for kind, v in top),
        "connections": counts["connections"],
    }


def scenario_drain(bench: Bench) -> None:
    r, n = bench.results, bench.size["n"]
    print(f"\n== 1. Drain: {n:,} due POST_SOCIAL actions, PROOF, one daemon, {bench.batch} per tick ==", flush=True)
    pg = drain_aol(bench, bench.pg_database("drain"), "drain-pg", memory=True)
    bench.drop(f"{DB_PREFIX}_drain")
    lite = drain_aol(bench, bench.sqlite_database("drain"), "drain-sqlite")
    r.figures["aol_pg_steady"] = pg["steady"]
    for name, result in (("PostgreSQL", pg), ("SQLite", lite)):
        r.add("1 Drain", f"AOL on {name}: wall, process start to last action done", f"{result['wall']:.1f} s")
        r.add("1 Drain", f"AOL on {name}: steady rate (middle 80 %)", fmt_rate(result["steady"]))
        r.add("1 Drain", f"AOL on {name}: overall rate (N / wall)", fmt_rate(rate(n, result["wall"])))
        if result["succeeded"] != n:
            r.note(f"AOL on {name}: only {result['succeeded']} of {n} actions succeeded")
    pg_rt = round_trips(bench, bench.pg_database("roundtrips"), "roundtrips-pg")
    bench.drop(f"{DB_PREFIX}_roundtrips")
    lite_rt = round_trips(bench, bench.sqlite_database("roundtrips"), "roundtrips-sqlite")
    for name, result in (("PostgreSQL", pg_rt), ("SQLite", lite_rt)):
        r.add(
            "1 Drain",
            f"AOL on {name}: DB round trips per action (statements + BEGIN/COMMIT)",
            f"{result['round_trips']:.2f} ({result['statements']:.2f} statements, "
            f"{result['transactions']:.2f} transactions)",
        )
    for name, result in (("PostgreSQL", pg_rt), ("SQLite", lite_rt)):
        r.note(f"Statements per action on {name}, most frequent first: {result['top']}.")
    r.note(
        f"Round trips were counted in a separate drain of {pg_rt['n']:,} actions by bench/counted_manage.py "
        "(manage.py with an execute wrapper on every connection and counters on COMMIT/ROLLBACK; "
        "pg_stat_statements is not preloaded on this server). Each transaction costs a BEGIN and a COMMIT "
        f"round trip. That drain opened {pg_rt['connections']} PostgreSQL connection(s) in all."
    )
    bench.results.figures["rss_n"] = pg["rss_n"]
    r.add("8 Memory", f"daemon RSS after draining {n:,} actions (PostgreSQL)", f"{pg['rss_n'] / 2**20:.1f} MiB")
    if "rss_memory_n" in pg:
        m = bench.size["memory_n"]
        growth = (pg["rss_memory_n"] - pg["rss_n"]) / 2**20
        r.add("8 Memory", f"daemon RSS after draining {m:,} actions", f"{pg['rss_memory_n'] / 2**20:.1f} MiB")
        r.add("8 Memory", f"RSS growth from {n:,} to {m:,} actions", f"{growth:+.1f} MiB", "<= 10 MB", growth <= 10)
        r.add(
            "1 Drain",
            f"AOL on PostgreSQL: steady rate over the next {m - n:,} actions",
            fmt_rate(pg["steady_memory_n"]),
        )
    else:
        r.note("Memory: the 100k-action RSS figure is only measured in the full run.")


def scenario_drain_store(bench: Bench) -> None:
    """The drain once per artifact store (AOL_ARTIFACT_STORE=files, then database), on both databases."""
    r, n = bench.results, bench.size["n"]
    print(f"\n== 1. Drain per artifact store: {n:,} due POST_SOCIAL actions, PROOF, files vs database ==", flush=True)
    for store in ("files", "database"):
        pg = drain_aol(bench, bench.pg_database(f"drain_{store}"), f"drain-{store}-pg", store=store)
        bench.drop(f"{DB_PREFIX}_drain_{store}")
        lite = drain_aol(bench, bench.sqlite_database(f"drain_{store}"), f"drain-{store}-sqlite", store=store)
        for name, result in (("PostgreSQL", pg), ("SQLite", lite)):
            r.add("1 Drain", f"AOL_ARTIFACT_STORE={store} on {name}: wall", f"{result['wall']:.1f} s")
            steady = fmt_rate(result["steady"])
            r.add("1 Drain", f"AOL_ARTIFACT_STORE={store} on {name}: steady rate", steady)
            if result["succeeded"] != n:
                r.note(f"AOL_ARTIFACT_STORE={store} on {name}: only {result['succeeded']} of {n} actions succeeded")
    r.note(
        "Drain per store: the same drain as scenario 1 (one daemon, PROOF), run once with artifacts written as files "
        "(temporary file, fsync, hard link, directory fsync) and once as aol_artifacts rows inserted in the "
        "transaction of the SUCCESS (AOL_ARTIFACT_STORE=database)."
    )


# --- 2. Peers and the floor -----------------------------------------------------------------------


def drain_peer(bench: Bench, label: str, enqueue_job: str, worker_args: list[str], done_sql: str) -> dict:
    n = bench.size["n"]
    url = bench.pg_database(label, template=PEER_TEMPLATE)
    db = Database(url)
    env = django_env(url, artifacts=bench.artifacts(label), settings=PEER_SETTINGS)
    job(enqueue_job, env, "--n", str(n), "--prefix", label)
    started = time.time()
    worker = start(["manage.py", *worker_args], env, log=label)
    try:
        code = worker.wait(timeout=max(600, n / 10))
    finally:
        stop(worker)
    if code != 0:
        raise RuntimeError(f"{label} worker exited {code}; see {log_path(label)}")
    done = [to_epoch(ts) for (ts,) in db.rows(done_sql)]
    db.close()
    bench.drop(f"{DB_PREFIX}_{label}")
    return {"n": len(done), "wall": max(done) - started, "steady": steady_rate(done)}


def drain_floor(bench: Bench, k: int) -> dict:
    n = bench.size["n"]
    label = f"floor-k{k}"
    url = bench.pg_database(label.replace("-", "_"), template=None)
    env = django_env(url, artifacts=bench.artifacts(label))
    job("floor-enqueue-bulk", env, "--n", str(n), "--prefix", label)
    result = job("floor-drain", env, "--k", str(k))
    bench.drop(f"{DB_PREFIX}_{label.replace('-', '_')}")
    # The loop is timed in-process, so it has no start-up to leave out: its rate is the steady rate.
    return {"n": result["n"], "wall": result["seconds"], "steady": rate(result["n"], result["seconds"])}


def scenario_peers(bench: Bench) -> None:
    r, n = bench.results, bench.size["n"]
    print(f"\n== 2. Peers on the same server: {n:,} jobs each, one worker process, concurrency 1 ==", flush=True)
    contenders = {
        "django-tasks-db db_worker": drain_peer(
            bench,
            "dtdb",
            "enqueue-dtdb-bulk",
            ["db_worker", "--batch", "--no-startup-delay", "--no-reload", "--interval", "0.01"],
            f"SELECT finished_at FROM {DTDB_TABLE} WHERE status = 'SUCCESSFUL'",
        ),
        "Procrastinate worker": drain_peer(
            bench,
            "procrastinate",
            "enqueue-procrastinate-bulk",
            ["procrastinate", "worker", "--concurrency", "1", "--one-shot"],
            "SELECT at FROM procrastinate_events WHERE type = 'succeeded'",
        ),
        "raw psycopg floor, k=1": drain_floor(bench, 1),
        "raw psycopg floor, k=100": drain_floor(bench, 100),
    }
    ours = r.figures.get("aol_pg_steady", math.nan)
    for name, result in contenders.items():
        if result["n"] != n:
            r.note(f"{name}: only {result['n']} of {n} jobs finished")
        r.add("2 Peers", f"{name}: wall / steady rate", f"{result['wall']:.1f} s / {fmt_rate(result['steady'])}")
    targets = {
        "django-tasks-db db_worker": (4.0, ">= 4x"),
        "Procrastinate worker": (4.0, ">= 4x"),
        "raw psycopg floor, k=1": (None, ""),
        "raw psycopg floor, k=100": (0.5, ">= 0.50x"),
    }
    for name, result in contenders.items():
        ratio = ours / result["steady"]
        wanted, text = targets[name]
        r.add(
            "2 Peers",
            f"ratio AOL (PostgreSQL) / {name}",
            fmt_ratio(ratio),
            text,
            None if wanted is None or math.isnan(ratio) else ratio >= wanted,
        )
    r.note(
        "Every contender's job calls the AOL's own artifact_write (temporary file, fsync, rename, directory "
        "fsync) on about 220 bytes and SHA-256s it, so the file work is identical. Ratios compare steady "
        "rates (middle 80 % of completions for the processes; N / loop time for the floor, whose loop is timed "
        "in-process), which leave out process start-up; the walls of the daemon and the workers include it."
    )


# --- 3. Enqueue -----------------------------------------------------------------------------------


def scenario_enqueue(bench: Bench) -> None:
    r, n = bench.results, bench.size["n"]
    print(f"\n== 3. Enqueue: {n:,} one at a time (a transaction each) and {n:,} in bulk ==", flush=True)
    figures = {}

    def measure(label: str, job_name: str, *, url: str, settings: str = "aicmo_site.settings") -> float:
        env = django_env(url, artifacts=bench.artifacts("enqueue"), settings=settings)
        result = job(job_name, env, "--n", str(n))
        figures[label] = rate(result["n"], result["seconds"])
        return figures[label]

    cases = [
        ("AOL action_enqueue, PostgreSQL", "enqueue-aol-one", "app"),
        ("AOL action_enqueue, SQLite", "enqueue-aol-one", "sqlite"),
        ("raw psycopg INSERT, autocommit", "floor-enqueue-one", "empty"),
        ("django-tasks-db Task.enqueue()", "enqueue-dtdb-one", "peers"),
        ("Procrastinate task.defer()", "enqueue-procrastinate-one", "peers"),
        ("AOL action_enqueue_many, PostgreSQL", "enqueue-aol-many", "app"),
        ("AOL action_enqueue_many, SQLite", "enqueue-aol-many", "sqlite"),
        ("raw psycopg COPY, one transaction", "floor-enqueue-bulk", "empty"),
        ("django-tasks-db bulk_create of its rows", "enqueue-dtdb-bulk", "peers"),
        ("Procrastinate task.batch_defer()", "enqueue-procrastinate-bulk", "peers"),
    ]
    for label, job_name, kind in cases:
        if kind == "sqlite":
            url = bench.sqlite_database("enqueue")
        else:
            template = {"app": APP_TEMPLATE, "peers": PEER_TEMPLATE, "empty": None}[kind]
            url = bench.pg_database("enqueue", template=template)
        measure(label, job_name, url=url, settings=PEER_SETTINGS if kind == "peers" else "aicmo_site.settings")
        bench.drop(f"{DB_PREFIX}_enqueue")
    # The command an operator runs, start-up included.
    url = bench.pg_database("enqueue")
    env = django_env(url, artifacts=bench.artifacts("enqueue"))
    started = time.perf_counter()
    bench.enqueue_file(env, n, prefix="cmd", log="enqueue-command")
    command_seconds = time.perf_counter() - started
    bench.drop(f"{DB_PREFIX}_enqueue")

    floor_one = figures["raw psycopg INSERT, autocommit"]
    for label, value in figures.items():
        target, met = "", None
        if label == "AOL action_enqueue, PostgreSQL":
            target, met = ">= floor / 1.5", value >= floor_one / 1.5
        elif label == "AOL action_enqueue_many, PostgreSQL":
            target, met = ">= 10,000/s", value >= 10_000
        r.add("3 Enqueue", label, fmt_rate(value), target, met)
    r.add(
        "3 Enqueue",
        "ratio AOL one at a time / raw INSERT (PostgreSQL)",
        fmt_ratio(figures["AOL action_enqueue, PostgreSQL"] / floor_one),
        ">= 0.67x",
        figures["AOL action_enqueue, PostgreSQL"] / floor_one >= 1 / 1.5,
    )
    for peer in ("django-tasks-db Task.enqueue()", "Procrastinate task.defer()"):
        r.add(
            "3 Enqueue",
            f"ratio AOL one at a time / {peer}",
            fmt_ratio(figures["AOL action_enqueue, PostgreSQL"] / figures[peer]),
        )
    for peer in (
        "django-tasks-db bulk_create of its rows",
        "Procrastinate task.batch_defer()",
        "raw psycopg COPY, one transaction",
    ):
        r.add(
            "3 Enqueue",
            f"ratio AOL bulk / {peer}",
            fmt_ratio(figures["AOL action_enqueue_many, PostgreSQL"] / figures[peer]),
        )
    r.add(
        "3 Enqueue",
        f"`manage.py aol_enqueue --from-file` with {n:,} lines (start-up included)",
        f"{command_seconds:.1f} s ({fmt_rate(rate(n, command_seconds))})",
    )
    r.note(
        "Enqueue loops are timed in-process (no start-up). One at a time: action_enqueue, like django-tasks-db "
        "and the raw floor, sends a single autocommit INSERT (INSERT … ON CONFLICT (idempotency_key) DO NOTHING "
        "RETURNING); the floor's table has fewer columns and indexes, and its psycopg cursor binds parameters on "
        "the server and prepares the statement after five runs, while Django (psycopg 3 by default) binds them "
        "client-side and prepares nothing. In bulk, action_enqueue_many sends each batch of up to 5,000 items as "
        "one INSERT … SELECT from a JSON document. django-tasks-db has no bulk API, so its bulk figure is "
        "bulk_create of its model rows."
    )


# --- 4. Idle cost ---------------------------------------------------------------------------------


def scenario_idle(bench: Bench) -> None:
    r = bench.results
    seconds = bench.size["idle_seconds"]
    print(f"\n== 4. Idle cost: statements per idle tick, CPU over {seconds:g} s idle ==", flush=True)
    for name, url in (("PostgreSQL", bench.pg_database("idle")), ("SQLite", bench.sqlite_database("idle"))):
        result = job("idle-tick", django_env(url, artifacts=bench.artifacts("idle")), "--ticks", "20")
        per_tick = result["statements"] / result["ticks"]
        trips = result["round_trips"] / result["ticks"]
        r.add("4 Idle", f"SQL statements per idle tick ({name})", f"{per_tick:g}", "<= 5", per_tick <= 5)
        r.add("4 Idle", f"round trips per idle tick, with BEGIN/COMMIT ({name})", f"{trips:g}")
    bench.drop(f"{DB_PREFIX}_idle")
    url = bench.pg_database("idle")
    db = Database(url)
    counts_file = VAR / "idle-counts.json"
    env = django_env(url, artifacts=bench.artifacts("idle"), BENCH_COUNTS_FILE=str(counts_file), BENCH_COUNTS_EVERY="1")
    daemon = start(["bench/counted_manage.py", "run_aol_daemon", "--proof"], env, log="idle")
    try:
        wait_for(
            lambda: counts_file.exists() and db.scalar("SELECT count(*) FROM aol_tick_ledger") >= 1,
            timeout=60,
            interval=0.1,
            what="first tick",
        )
        time.sleep(1.5)  # past the first tick and a fresh dump of the counts
        process = psutil.Process(daemon.pid)
        cpu_before, counts_before = process.cpu_times(), json.loads(counts_file.read_text())
        ticks_before = db.scalar("SELECT count(*) FROM aol_tick_ledger")
        time.sleep(seconds)
        cpu_after, counts_after = process.cpu_times(), json.loads(counts_file.read_text())
        ticks = db.scalar("SELECT count(*) FROM aol_tick_ledger") - ticks_before
    finally:
        stop(daemon)
        db.close()
    per_minute = 60 / seconds
    cpu = (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system) * per_minute
    r.add("4 Idle", "daemon CPU seconds per idle minute (default settings)", f"{cpu:.3f} s")
    statements = (counts_after["statements"] - counts_before["statements"]) * per_minute
    connections = (counts_after["connections"] - counts_before["connections"]) * per_minute
    r.add(
        "4 Idle",
        "statements / new connections per idle minute (loop and watchdog)",
        f"{statements:.0f} / {connections:.0f} ({ticks * per_minute:.0f} ticks)",
    )
    r.note(
        "Idle ticks are counted in-process with CaptureQueriesContext over 20 ticks after the lease is "
        "acquired (the same figure tests/daemon/test_loop.py pins). The idle daemon also runs its "
        "watchdog (flags every 0.5 s, lease every 5 s) and, on PostgreSQL, the wake-up listener (no statements "
        "while idle). The loop keeps its connection from tick to tick and drops it only after an error "
        "(Daemon._check_connection), so an idle daemon opens no new connections."
    )
    bench.drop(f"{DB_PREFIX}_idle")


# --- 5. Latency -----------------------------------------------------------------------------------


def scenario_latency(bench: Bench) -> None:
    r = bench.results
    samples = bench.size["latency_samples"]
    print("\n== 5. Latency: enqueue to done, daemon idle at its default interval ==", flush=True)
    # With the wake-up, arrivals are spread over a second (the phase of the tick does not matter);
    # polling needs arrivals spread over a whole interval, so it gets fewer samples to stay short.
    variants = [
        ("with the wake-up (LISTEN/NOTIFY)", {}, samples, 1.0, "<= 100 ms with a wake-up"),
        ("polling only (AOL_WAKE_ON_ENQUEUE=false)", {"AOL_WAKE_ON_ENQUEUE": "false"}, max(6, samples // 4), None, ""),
    ]
    interval = None
    for number, (label, extra, count, spread, target) in enumerate(variants):
        url = bench.pg_database("latency")
        db = Database(url)
        env = django_env(url, artifacts=bench.artifacts("latency"), **extra)
        daemon = start(["manage.py", "run_aol_daemon", "--proof"], env, log=f"latency-{number}")
        try:
            wait_for(
                lambda db=db: db.scalar("SELECT count(*) FROM aol_tick_ledger") >= 1,
                timeout=60,
                interval=0.1,
                what="first tick",
            )
            args = ["--samples", str(count)] + (["--spread", str(spread)] if spread else [])
            result = job("latency", env, *args)
        finally:
            stop(daemon)
            db.close()
        interval = result["interval_seconds"]
        r.add("5 Latency", f"enqueue-to-done p50, {label}, {count} actions", fmt_ms(result["p50"]))
        r.add(
            "5 Latency",
            f"enqueue-to-done p95, {label}, {count} actions",
            fmt_ms(result["p95"]),
            target,
            result["p95"] <= 0.1 if target else None,
        )
        bench.drop(f"{DB_PREFIX}_latency")
    r.note(
        f"Latency, PostgreSQL, daemon at its defaults (AOL_TICK_INTERVAL_SECONDS={interval:g}, "
        "AOL_MAX_ACTIONS_PER_TICK arrivals per round at most). With the wake-up an INSERT trigger NOTIFYs the "
        "daemon's listener, which ends its sleep; polling only, an action waits for the next tick, so latency "
        "is spread over one interval. 'Done' is the execution log's time, when the attempt ended."
    )


# --- 6. Operator controls -------------------------------------------------------------------------


def scenario_controls(bench: Bench) -> None:
    r = bench.results
    trials = bench.size["control_trials"]
    print(f"\n== 6. Operator controls: pause and kill set in the database, {trials} trials each ==", flush=True)
    url = bench.pg_database("controls")
    db = Database(url)
    env = django_env(url, artifacts=bench.artifacts("controls"))
    backlog = max(5_000, trials * 1_500)
    bench.enqueue_file(env, backlog, prefix="controls", log="controls-enqueue")
    rng = random.Random(6)

    def last_action_done() -> float:
        return to_epoch(db.scalar("SELECT max(ts) FROM aol_execution_logs WHERE action_id IS NOT NULL"))

    def quiet() -> None:
        """Wait until no action has finished for 1.5 s."""
        last, since = None, time.monotonic()
        while time.monotonic() - since < 1.5:
            now = db.scalar("SELECT max(id) FROM aol_execution_logs WHERE action_id IS NOT NULL")
            if now != last:
                last, since = now, time.monotonic()
            time.sleep(0.1)

    def working(before: int) -> bool:
        return db.scalar("SELECT count(*) FROM aol_execution_logs WHERE action_id IS NOT NULL") > before + 20

    def logged() -> int:
        return db.scalar("SELECT count(*) FROM aol_execution_logs WHERE action_id IS NOT NULL")

    pauses, kills_exit, kills_last = [], [], []
    daemon = start(["manage.py", *bench.drain_args()], env, log="controls-pause")
    try:
        for _ in range(trials):
            before = logged()
            db.execute("UPDATE aol_control_flags SET paused = false, updated_by = 'bench'")
            wait_for(lambda before=before: working(before), timeout=30, interval=0.05, what="daemon working")
            time.sleep(rng.uniform(0.2, 0.8))
            db.execute("UPDATE aol_control_flags SET paused = true, updated_by = 'bench'")
            paused_at = time.time()
            quiet()
            pauses.append(max(0.0, last_action_done() - paused_at))
    finally:
        stop(daemon)
    db.execute("UPDATE aol_control_flags SET paused = false, updated_by = 'bench'")
    for trial in range(trials):
        db.execute("UPDATE aol_control_flags SET killed = false, updated_by = 'bench'")
        before = logged()
        daemon = start(["manage.py", *bench.drain_args()], env, log=f"controls-kill-{trial}")
        try:
            wait_for(lambda before=before: working(before), timeout=60, interval=0.05, what="daemon working")
            time.sleep(rng.uniform(0.2, 0.8))
            db.execute("UPDATE aol_control_flags SET killed = true, updated_by = 'bench'")
            killed_at = time.time()
            daemon.wait(timeout=30)
            kills_exit.append(time.time() - killed_at)
            kills_last.append(max(0.0, last_action_done() - killed_at))
        finally:
            stop(daemon)
    remaining = db.scalar(f"SELECT count(*) FROM aol_actions WHERE status IN {UNFINISHED}")
    db.close()
    bench.drop(f"{DB_PREFIX}_controls")
    for label, values in (
        ("pause -> last action done", pauses),
        ("kill -> last action done", kills_last),
        ("kill -> process exit", kills_exit),
    ):
        r.add("6 Controls", f"{label} p50", fmt_ms(percentile(values, 50)))
        r.add("6 Controls", f"{label} p95", fmt_ms(percentile(values, 95)), "<= 1 s", percentile(values, 95) <= 1.0)
    r.note(
        f"Controls: flags set by SQL UPDATE (as any database client could), with the daemon busy draining a backlog "
        f"({bench.batch} per tick); the watchdog polls the flags every AOL_CONTROL_POLL_SECONDS (0.5 s). "
        f"{remaining} actions were still queued at the end, so the daemon never ran dry during a trial."
    )


# --- 7. Console at scale --------------------------------------------------------------------------

#: Every NOT NULL column is written: the model's defaults are Python-side, so the table has none.
#: Status mix per 10,000 actions (i * 7919 mod 10,000 spreads them evenly over the table).
FILL_ACTIONS = """
INSERT INTO aol_actions (idempotency_key, action_type, payload, status, attempts, not_before, last_error,
                         claimed_by, lease_token, claimed_mode, created_at, updated_at, priority,
                         requires_approval, approval_artifact_ref, approval_sha256, approved_by,
                         cancel_requested, deferred_note, rate_key)
SELECT 'bench-' || lpad(i::text, 8, '0'), 'POST_SOCIAL',
       jsonb_build_object('platform', 'twitter', 'message', 'Benchmark post ' || i),
       s.status,
       CASE WHEN s.status IN ('PENDING', 'READY', 'AWAITING_APPROVAL', 'REJECTED', 'CANCELLED') THEN 0
            WHEN s.status = 'DLQ' THEN 3 ELSE 1 END,
       s.t + CASE WHEN s.status = 'RETRY' THEN interval '1 hour' ELSE interval '0' END,
       CASE WHEN s.status IN ('RETRY', 'DLQ', 'FAILED') THEN 'TransientAdapterError: could not write artifact'
            ELSE '' END,
       CASE WHEN s.claimed THEN 'bench-host:1' ELSE '' END,
       CASE WHEN s.claimed THEN 1 END,
       CASE WHEN s.claimed THEN 'PROOF' ELSE '' END,
       s.t, s.t + interval '2 seconds', 0,
       s.status IN ('AWAITING_APPROVAL', 'REJECTED'),
       CASE WHEN s.status IN ('AWAITING_APPROVAL', 'REJECTED') THEN 'post_social/approval-' || i || '.txt'
            ELSE '' END,
       CASE WHEN s.status IN ('AWAITING_APPROVAL', 'REJECTED') THEN md5(i::text) || md5((i + 1)::text)
            ELSE '' END,
       '', false, '', ''
FROM (
    SELECT i, t, status,
           status NOT IN ('PENDING', 'READY', 'AWAITING_APPROVAL', 'REJECTED', 'CANCELLED') AS claimed
    FROM (
        SELECT i, now() - (%(n)s - i) * interval '5 seconds' AS t,
               CASE WHEN m < 8900 THEN 'SUCCESS' WHEN m < 9200 THEN 'PENDING' WHEN m < 9300 THEN 'READY'
                    WHEN m < 9500 THEN 'RETRY' WHEN m < 9740 THEN 'DLQ' WHEN m < 9880 THEN 'FAILED'
                    WHEN m < 9950 THEN 'CANCELLED' WHEN m < 9975 THEN 'AWAITING_APPROVAL'
                    WHEN m < 9985 THEN 'REJECTED' WHEN m < 9990 THEN 'NEEDS_REVIEW'
                    ELSE 'RUNNING' END AS status
        FROM (SELECT i, (i::bigint * 7919) %% 10000 AS m FROM generate_series(1, %(n)s) AS i) AS g
    ) AS mix
) AS s
"""
STATUS_MIX = (
    "89 % SUCCESS, 3 % PENDING, 1 % READY, 2 % RETRY, 2.4 % DLQ, 1.4 % FAILED, 0.7 % CANCELLED, "
    "0.25 % AWAITING_APPROVAL, 0.1 % REJECTED, 0.05 % NEEDS_REVIEW, 0.1 % RUNNING"
)
FILL_LOGS = """
INSERT INTO aol_execution_logs (action_id, ts, level, message, actor, artifact_ref, artifact_sha256)
SELECT (i::bigint * 7919) %% %(actions)s + 1, now() - (%(n)s - i) * interval '5 seconds',
       CASE WHEN i %% 50 = 0 THEN 'ERROR' WHEN i %% 20 = 0 THEN 'WARNING' ELSE 'INFO' END,
       'PROOF: would post 22 characters to twitter', 'bench-host:1',
       'post_social/' || i || '.txt', md5(i::text) || md5((i + 1)::text)
FROM generate_series(1, %(n)s) AS i
"""
FILL_TICKS = """
INSERT INTO aol_tick_ledger (started_at, finished_at, status, actions_attempted, actions_succeeded, owner,
                             lease_token, notes, queue_depth)
SELECT now() - (%(n)s - i) * interval '50 seconds', now() - (%(n)s - i) * interval '50 seconds'
       + interval '30 milliseconds', CASE WHEN i %% 100 = 0 THEN 'PARTIAL' ELSE 'SUCCESS' END, 3,
       CASE WHEN i %% 100 = 0 THEN 2 ELSE 3 END, 'bench-host:1', 1, 'PROOF',
       jsonb_build_object('PENDING', 30000 + i %% 100, 'READY', 10000, 'RETRY', 20000, 'RUNNING', 3,
                          'DLQ', 24000, 'NEEDS_REVIEW', 500, 'AWAITING_APPROVAL', 2500)
FROM generate_series(1, %(n)s) AS i
"""
CONSOLE_TARGETS = {
    "status_snapshot() selector": 0.05,
    "status JSON": 0.05,
    "status page": 0.1,
    "admin changelist": 0.3,
    "admin changelist, status=DLQ": 0.3,
    "admin changelist, key search": 0.3,
    "admin action page": 0.1,
    "console actions": 0.1,
    "console actions, status=DLQ": 0.1,
    "console action page": 0.1,
    "console attention": 0.1,
    "console calendar": 0.1,
    "console audit": 0.1,
}


def scenario_console(bench: Bench) -> None:
    r, size = bench.results, bench.size
    actions, logs, ticks = size["console_actions"], size["console_logs"], size["console_ticks"]
    print(f"\n== 7. Console at scale: {actions:,} actions, {logs:,} logs, {ticks:,} ticks ==", flush=True)
    url = bench.pg_database("console")
    db = Database(url)
    started = time.perf_counter()
    db.execute(FILL_ACTIONS, {"n": actions})
    db.execute(FILL_LOGS, {"n": logs, "actions": actions})
    db.execute(FILL_TICKS, {"n": ticks})
    db.execute("VACUUM ANALYZE aol_actions")
    db.execute("VACUUM ANALYZE aol_execution_logs")
    db.execute("VACUUM ANALYZE aol_tick_ledger")
    fill = time.perf_counter() - started
    db.close()
    r.add("7 Console", "bulk fill (INSERT ... SELECT generate_series, then VACUUM ANALYZE)", f"{fill:.1f} s")
    env = django_env(url, artifacts=bench.artifacts("console"))
    result = job("console", env, "--requests", str(size["console_requests"]))
    for label, figures in result["results"].items():
        limit = CONSOLE_TARGETS[label]
        extra = f"; {figures['queries']} queries" + "".join(f"; runs {c}" for c in figures["counts"])
        r.add("7 Console", f"{label} p50", fmt_ms(figures["p50"]) + extra)
        r.add("7 Console", f"{label} p95", fmt_ms(figures["p95"]), f"<= {limit * 1000:g} ms", figures["p95"] <= limit)
        if figures["p95"] > limit and figures["slowest"]:
            r.note(f"Console, {label}: slowest query of the last request took {figures['slowest']}")
    missing = [name for name in ("status page", "status JSON") if name not in result["results"]]
    if missing:
        r.note(
            f"Console: {' and '.join(missing)} not measured: no URL named orchestration:status / "
            "orchestration:status_json exists on this branch yet (the console issue builds them). The "
            "status_snapshot() selector they will serialise is measured instead."
        )
    r.note(
        f"Console: {size['console_requests']} timed requests each after 2 warm-up requests, through Django's test "
        "client with a logged-in superuser, DEBUG off, on a freshly VACUUM ANALYZEd database. Status mix: "
        f"{STATUS_MIX}."
    )
    if not bench.args.keep:  # --keep leaves it for EXPLAIN ANALYZE (psql DB_PREFIX_console)
        bench.drop(f"{DB_PREFIX}_console")


# --- Report ---------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    names = [
        "Django",
        "psycopg",
        "psycopg-binary",
        "psycopg2-binary",
        "django-tasks",
        "django-tasks-db",
        "procrastinate",
        "psutil",
    ]
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine(bench: Bench) -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = bench.admin.scalar("SELECT version()").split(" on ")[0]
    settings = {
        name: bench.admin.scalar(f"SHOW {name}")
        for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections")
    }
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "orchestration", "aicmo_site"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cores": f"{os.cpu_count()} logical ({psutil.cpu_count(logical=False)} physical), {cpu}",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg + " (" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")",
        "code": f"{commit}{' with uncommitted changes' if dirty else ''}",
    }


def report(bench: Bench, started: datetime, load_before: tuple, seconds: float) -> str:
    info = machine(bench)
    load_after = os.getloadavg()
    lines = [
        f"# AOL benchmark results ({bench.mode} run)",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; took {seconds / 60:.1f} min",
        f"- Command: `make bench{' ARGS=--quick' if bench.args.quick else ''}` "
        f"(`bench/run.py{''.join(' ' + arg for arg in sys.argv[1:])}`)",
        f"- Machine: {info['cores']}; {info['memory']}; {info['os']}",
        f"- Python {info['python']}; {info['postgresql']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "- Django talks to PostgreSQL through psycopg 3 in the benchmark's environment (Django prefers it when "
        "installed; the app's own environment has only psycopg2), so every contender uses the same driver.",
        f"- Code: {info['code']}; drain batch (--max-actions) {bench.batch}; N = {bench.size['n']:,}",
        f"- Load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f}. The machine is shared with "
        "other work, so every figure is noisy; the ratios come from the same run and are the figures to compare.",
        "",
        "| Scenario | Measure | Figure | Target | Met? |",
        "|---|---|---|---|---|",
    ]
    for row in ordered_rows(bench):
        met = "" if row.met is None else ("met" if row.met else "**missed**")
        lines.append(f"| {row.scenario} | {row.measure} | {row.figure} | {row.target} | {met} |")
    lines += ["", "## Notes", ""] + [f"- {note}" for note in bench.results.notes]
    return "\n".join(lines) + "\n"


def ordered_rows(bench: Bench) -> list[Row]:
    """Rows grouped by scenario number, in the order each scenario added them."""
    return sorted(bench.results.rows, key=lambda row: int(row.scenario.split()[0]))


def print_table(bench: Bench) -> None:
    rows = ordered_rows(bench)
    if not rows:  # every selected scenario failed: the notes above say why
        return
    widths = [
        max(len(r.scenario) for r in rows),
        max(len(r.measure) for r in rows),
        max(len(r.figure) for r in rows),
        max(len(r.target) for r in rows),
    ]
    print("\n" + "=" * 40 + " Results " + "=" * 40)
    for row in rows:
        met = "" if row.met is None else ("met" if row.met else "MISSED")
        print(
            f"{row.scenario:<{widths[0]}}  {row.measure:<{widths[1]}}  {row.figure:>{widths[2]}}  "
            f"{row.target:<{widths[3]}}  {met}"
        )


SCENARIO_FUNCTIONS = {
    "drain": scenario_drain,
    "drain-store": scenario_drain_store,
    "peers": scenario_peers,
    "enqueue": scenario_enqueue,
    "idle": scenario_idle,
    "latency": scenario_latency,
    "controls": scenario_controls,
    "console": scenario_console,
    "api": scenario_api,  # bench/api.py
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller sizes; finishes in under 3 minutes.")
    parser.add_argument("--only", help=f"Comma-separated scenarios to run (default: all of {', '.join(SCENARIOS)}).")
    parser.add_argument("--n", type=int, help="Override N (actions per drain and enqueue).")
    parser.add_argument("--drain-batch", type=int, default=500, help="run_aol_daemon --max-actions when draining.")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="Server URL, no database.")
    parser.add_argument("--output", default=str(BENCH / "results" / "latest.md"), help="Markdown report path.")
    parser.add_argument("--keep", action="store_true", help="Keep the aicmo_bench_* databases and files afterwards.")
    args = parser.parse_args()
    selected = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = sorted(set(selected) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    bench = Bench(args)
    started, clock, load_before = datetime.now(UTC), time.perf_counter(), os.getloadavg()
    print(f"AOL benchmark, {bench.mode} run, N = {bench.size['n']:,}; logs in {VAR / 'logs'}", flush=True)
    try:
        bench.prepare()
        for name in SCENARIOS:
            if name in selected:
                try:
                    SCENARIO_FUNCTIONS[name](bench)
                except Exception as exc:  # report what ran; say plainly what did not
                    bench.results.failed.append(name)
                    bench.results.note(f"Scenario {name} FAILED: {type(exc).__name__}: {exc} (see {VAR / 'logs'}).")
    finally:
        bench.cleanup()
    seconds = time.perf_counter() - clock
    print_table(bench)
    text = report(bench, started, load_before, seconds)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"\nWritten to {output} ({seconds / 60:.1f} min).")
    if bench.results.failed:
        print(f"Scenario(s) that failed: {', '.join(bench.results.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
