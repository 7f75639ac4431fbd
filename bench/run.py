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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from bench.api import scenario_api  # noqa: E402
from bench.lib import (  # noqa: E402
    BENCH,
    PYTHON,
    ROOT,
    VAR,
    Database,
    aol_payload,
    django_env,
    job,
    log_path,
    manage,
    median,
    percentile,
    start,
    steady_rate,
    to_epoch,
    wait_for,
)
from bench.real import scenario_real  # noqa: E402

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
        "samples": 3,
        "big_table": 1_000_000,
        "default_n": 30,
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
        "samples": 3,
        "big_table": 100_000,
        "default_n": 9,
    },
}
SCENARIOS = ("drain", "drain-store", "enqueue", "idle", "latency", "controls", "console", "api", "real")
PEER_SETTINGS = "bench.peer_settings"
#: Every database the run makes starts with this; AICMO_BENCH_DB_PREFIX lets two runs share a server.
DB_PREFIX = os.environ.get("AICMO_BENCH_DB_PREFIX", "aicmo_bench")
APP_TEMPLATE = f"{DB_PREFIX}_template"
PEER_TEMPLATE = f"{DB_PREFIX}_peers_template"
PSYCOPG3_VERSION = importlib.metadata.version("psycopg")
DTDB_TABLE = "django_tasks_database_dbtaskresult"
UNFINISHED = "('PENDING', 'READY', 'RUNNING', 'RETRY')"


@dataclass
class Row:
    scenario: str
    measure: str
    figure: str
    target: str = ""
    met: bool | None = None
    why: str = ""  # for a missed target: the measured breakdown of what limits it


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    drain: dict = field(default_factory=dict)  # scenario 1's medians and samples, for the README section
    enqueue: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)  # bench/profile_drain.py's breakdown

    def add(
        self, scenario: str, measure: str, figure: str, target: str = "", met: bool | None = None, why: str = ""
    ) -> None:
        row = Row(scenario, measure, figure, target, met, why)
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


# --- 1. Drain: the AOL beside the peers, the floor and the ceiling, in rotated rounds ----------------------


@dataclass
class Contender:
    """One way of draining N jobs; ``run`` does one sample and returns at least ``steady`` (jobs/s) and ``n``."""

    name: str
    settings: str  # what it runs with, for the report
    run: Callable[[str], dict]  # called with a label unique to the sample


def summary(values: list[float]) -> str:
    """``median/s (min–max, k samples)``."""
    good = [v for v in values if not math.isnan(v)]
    if not good:
        return "n/a"
    return f"{fmt_rate(median(good))} ({min(good):,.0f}–{max(good):,.0f}, {len(good)} samples)"


def rotated(items: list, round_number: int) -> list:
    """``items`` starting at ``round_number`` (mod len): each contender runs early in one round, late in another."""
    shift = round_number % len(items)
    return items[shift:] + items[:shift]


def drain_aol(
    bench: Bench,
    url: str,
    label: str,
    *,
    driver: str = "psycopg",
    memory: bool = False,
    settle: bool = False,
    store: str = "files",
) -> dict:
    """N due actions, one daemon process: wall from process start to last action done, steady rate."""
    n = bench.size["n"]
    db = Database(url)
    env = django_env(url, artifacts=bench.artifacts(label), driver=driver, AOL_ARTIFACT_STORE=store)
    bench.enqueue_file(env, n, prefix=label, log=f"{label}-enqueue")
    if settle:  # a big table: let the new rows' statistics in, as autovacuum would on a live one
        db.execute("ANALYZE aol_actions")
    skip = db.scalar("SELECT count(*) FROM aol_execution_logs WHERE action_id IS NOT NULL")
    started = time.time()
    daemon = start(["manage.py", *bench.drain_args()], env, log=label)
    try:
        wait_drained(db, daemon, n=n, log=label)
        done = action_done_times(db, skip=skip)
        succeeded = db.scalar("SELECT count(*) FROM aol_actions WHERE status = 'SUCCESS'") - skip
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
            result["steady_memory_n"] = steady_rate(action_done_times(db, skip=skip + n))
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
        "top": ", ".join(f"{v / n:.3f} {kind}" for kind, v in top),
        "connections": counts["connections"],
    }


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


def drain_peer(bench: Bench, label: str, enqueue_job: str, worker_args: list[str], done_sql: str) -> dict:
    n = bench.size["n"]
    name = label.replace("-", "_")
    url = bench.pg_database(name, template=PEER_TEMPLATE)
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
    bench.drop(f"{DB_PREFIX}_{name}")
    return {"n": len(done), "wall": max(done) - started, "steady": steady_rate(done)}


def drain_floor(bench: Bench, label: str, k: int) -> dict:
    n = bench.size["n"]
    name = label.replace("-", "_")
    url = bench.pg_database(name, template=None)
    env = django_env(url, artifacts=bench.artifacts(label))
    job("floor-enqueue-bulk", env, "--n", str(n), "--prefix", label)
    result = job("floor-drain", env, "--k", str(k))
    bench.drop(f"{DB_PREFIX}_{name}")
    # The loop is timed in-process, so it has no start-up to leave out: its rate is the steady rate.
    return {"n": result["n"], "wall": result["seconds"], "steady": rate(result["n"], result["seconds"])}


def drain_body_only(bench: Bench, label: str) -> dict:
    """The ceiling: the job body N times in one process, no database, no queue."""
    n = bench.size["n"]
    env = django_env(bench.pg_url(APP_TEMPLATE), artifacts=bench.artifacts(label))
    result = job("body-only", env, "--n", str(n), "--prefix", label)
    return {"n": result["n"], "wall": result["seconds"], "steady": rate(result["n"], result["seconds"])}


#: Every NOT NULL column is written (see FILL_ACTIONS below); all finished, as a long-running queue's table is.
FILL_FINISHED_ACTIONS = """
INSERT INTO aol_actions (idempotency_key, action_type, payload, status, attempts, not_before, last_error,
                         claimed_by, lease_token, claimed_mode, created_at, updated_at, priority,
                         requires_approval, approval_artifact_ref, approval_sha256, approved_by,
                         cancel_requested, deferred_note, rate_key, claimed_in_batch)
SELECT 'old-' || lpad(i::text, 8, '0'), 'POST_SOCIAL',
       jsonb_build_object('platform', 'twitter', 'message', 'Benchmark post ' || i),
       'SUCCESS', 1, t, '', 'bench-host:1', 1, 'PROOF', t, t + interval '2 seconds', 0,
       false, '', '', '', false, '', '', true
FROM (SELECT i, now() - (%(n)s - i) * interval '1 second' AS t FROM generate_series(1, %(n)s) AS i) AS g
"""
FILL_FINISHED_LOGS = """
INSERT INTO aol_execution_logs (action_id, ts, level, message, actor, artifact_ref, artifact_sha256)
SELECT i, now() - (%(n)s - i) * interval '1 second', 'INFO', 'PROOF: would post 22 characters to twitter',
       'bench-host:1', 'post_social/' || i || '.txt', md5(i::text) || md5((i + 1)::text)
FROM generate_series(1, %(n)s) AS i
"""


def big_template(bench: Bench) -> str:
    """A migrated database holding ``big_table`` finished actions and their logs, made once per run."""
    name = f"{DB_PREFIX}_big_template"
    if not bench.admin.scalar("SELECT 1 FROM pg_database WHERE datname = %s", [name]):
        url = bench.pg_database("big_template")
        db = Database(url)
        started = time.perf_counter()
        db.execute(FILL_FINISHED_ACTIONS, {"n": bench.size["big_table"]})
        db.execute(FILL_FINISHED_LOGS, {"n": bench.size["big_table"]})
        db.execute("VACUUM ANALYZE aol_actions")
        db.execute("VACUUM ANALYZE aol_execution_logs")
        db.close()
        bench.results.figures["big_fill_seconds"] = time.perf_counter() - started
    return name


def drain_aol_big(bench: Bench, label: str) -> dict:
    template = big_template(bench)
    name = label.replace("-", "_")
    full = f"{DB_PREFIX}_{name}"
    bench.drop(full)
    # FILE_COPY: copies the template's files instead of writing them all to the WAL (PostgreSQL 15+).
    strategy = " STRATEGY FILE_COPY" if bench.admin.scalar("SHOW server_version_num") >= "150000" else ""
    bench.admin.execute(f'CREATE DATABASE "{full}" TEMPLATE "{template}"{strategy}')
    try:
        return drain_aol(bench, bench.pg_url(full), label, settle=True)
    finally:
        bench.drop(full)


def drain_aol_pg(bench: Bench, label: str, driver: str) -> dict:
    name = label.replace("-", "_")
    try:
        return drain_aol(bench, bench.pg_database(name), label, driver=driver)
    finally:
        bench.drop(f"{DB_PREFIX}_{name}")


#: The contenders' names, used for ratios and targets.
AOL_PG3 = "AOL daemon, PostgreSQL, psycopg 3"
AOL_PG2 = "AOL daemon, PostgreSQL, psycopg2"
AOL_SQLITE = "AOL daemon, SQLite"
AOL_BIG = "AOL daemon, PostgreSQL, psycopg 3, {big} finished actions in the table"
DTDB = "django-tasks-db db_worker"
PROCRASTINATE = "Procrastinate worker, concurrency 1"
FLOOR_1 = "raw psycopg, 1 job per transaction"
FLOOR_100 = "raw psycopg, 100 jobs per transaction"
CEILING = "job body alone, no database (the ceiling)"


def drain_contenders(bench: Bench) -> list[Contender]:
    aol_flags = " ".join(bench.drain_args()[1:])
    big = f"{bench.size['big_table']:,}"
    return [
        Contender(
            AOL_PG3,
            f"`run_aol_daemon {aol_flags}`; Django on psycopg {PSYCOPG3_VERSION} (client-side binding: Django's "
            "default)",
            lambda label: drain_aol_pg(bench, label, "psycopg"),
        ),
        Contender(
            AOL_PG2,
            "the same, Django on psycopg2 (psycopg 3 hidden: bench/drivers/psycopg2_only), as requirements.txt "
            "installs it",
            lambda label: drain_aol_pg(bench, label, "psycopg2"),
        ),
        Contender(
            AOL_SQLITE,
            f"`run_aol_daemon {aol_flags}` on a SQLite file (WAL)",
            lambda label: drain_aol(bench, bench.sqlite_database(label), label),
        ),
        Contender(
            AOL_BIG.format(big=big),
            f"as {AOL_PG3}, after {big} SUCCESS actions and their logs were bulk-inserted and VACUUM ANALYZEd",
            lambda label: drain_aol_big(bench, label),
        ),
        Contender(
            DTDB,
            "`db_worker --batch --no-startup-delay --no-reload --interval 0.01`, CONN_MAX_AGE=None (persistent "
            "connection: Django's documented setting; the worker calls close_old_connections() around every task, "
            "which under the default CONN_MAX_AGE=0 opens a new connection per task)",
            lambda label: drain_peer(
                bench,
                label,
                "enqueue-dtdb-bulk",
                ["db_worker", "--batch", "--no-startup-delay", "--no-reload", "--interval", "0.01"],
                f"SELECT finished_at FROM {DTDB_TABLE} WHERE status = 'SUCCESSFUL'",
            ),
        ),
        Contender(
            PROCRASTINATE,
            "`procrastinate worker --concurrency 1 --one-shot` (its own psycopg 3 async connector from the Django "
            "settings; LISTEN/NOTIFY and fetching as its defaults)",
            lambda label: drain_peer(
                bench,
                label,
                "enqueue-procrastinate-bulk",
                ["procrastinate", "worker", "--concurrency", "1", "--one-shot"],
                "SELECT at FROM procrastinate_events WHERE type = 'succeeded'",
            ),
        ),
        Contender(
            FLOOR_1,
            "psycopg 3 loop: UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING, job, UPDATE, "
            "COMMIT; server-side binding, prepared after 5 runs",
            lambda label: drain_floor(bench, label, 1),
        ),
        Contender(
            FLOOR_100,
            "the same, LIMIT 100, one UPDATE … FROM unnest for the batch",
            lambda label: drain_floor(bench, label, 100),
        ),
        Contender(
            CEILING,
            "the job body N times in one process: no queue, no database",
            lambda label: drain_body_only(bench, label),
        ),
    ]


#: (ours, theirs, wanted ratio ours/theirs) for the drain; ratios of medians from the same run.
DRAIN_TARGETS = [
    (AOL_PG3, CEILING, 0.75),
    (AOL_PG2, CEILING, 0.75),
    (AOL_PG3, PROCRASTINATE, 4.0),
    (AOL_PG2, PROCRASTINATE, 4.0),
    (AOL_PG3, DTDB, 4.0),
    (AOL_PG2, DTDB, 4.0),
    (AOL_PG3, FLOOR_100, None),
    (AOL_PG3, FLOOR_1, None),
    (AOL_SQLITE, CEILING, None),
]


def scenario_drain(bench: Bench) -> None:
    r, n, samples = bench.results, bench.size["n"], bench.size["samples"]
    contenders = drain_contenders(bench)
    big_name = contenders[3].name
    print(
        f"\n== 1. Drain: {n:,} jobs, one worker process each, {len(contenders)} contenders x {samples} rounds "
        "in rotated order ==",
        flush=True,
    )
    rates: dict[str, list[float]] = {c.name: [] for c in contenders}
    results: dict[str, list[dict]] = {c.name: [] for c in contenders}
    for number in range(samples):
        for contender in rotated(contenders, number):
            label = f"d{number}-{contenders.index(contender)}"
            try:
                result = contender.run(label)
            except Exception as exc:  # one failed sample: say so, keep the others
                r.note(f"Drain, {contender.name}, round {number + 1} FAILED: {type(exc).__name__}: {exc}")
                result = {"n": 0, "steady": math.nan, "wall": math.nan}
            if result["n"] != n and not math.isnan(result["steady"]):
                r.note(f"Drain, {contender.name}, round {number + 1}: only {result['n']} of {n} jobs finished")
            if result.get("succeeded", n) != n:
                r.note(f"Drain, {contender.name}, round {number + 1}: {result['succeeded']} of {n} actions succeeded")
            rates[contender.name].append(result["steady"])
            results[contender.name].append(result)
            print(f"    round {number + 1}: {contender.name}: {fmt_rate(result['steady'])}", flush=True)
    medians = {name: median(values) for name, values in rates.items()}
    r.figures.update({f"drain:{name}": value for name, value in medians.items()})
    r.drain = {"medians": medians, "rates": rates, "contenders": contenders, "big": big_name}
    for contender in contenders:
        r.add("1 Drain", f"{contender.name}: steady rate, median (min–max)", summary(rates[contender.name]))
    for ours, theirs, wanted in DRAIN_TARGETS:
        ratio = medians[ours] / medians[theirs] if medians[theirs] else math.nan
        r.add(
            "1 Drain",
            f"ratio {ours} / {theirs}",
            fmt_ratio(ratio),
            "" if wanted is None else f">= {wanted:g}x",
            None if wanted is None or math.isnan(ratio) else ratio >= wanted,
        )
    big_ratio = medians[big_name] / medians[AOL_PG3] if medians[AOL_PG3] else math.nan
    r.add(
        "1 Drain",
        f"ratio with {bench.size['big_table']:,} finished actions in the table / empty table (psycopg 3)",
        fmt_ratio(big_ratio),
        ">= 0.90x (<= 10 % slower)",
        None if math.isnan(big_ratio) else big_ratio >= 0.9,
    )
    if "big_fill_seconds" in r.figures:
        r.note(
            f"Drain on a big table: {bench.size['big_table']:,} SUCCESS actions and as many execution logs were "
            "inserted once (INSERT … SELECT generate_series, then VACUUM ANALYZE: "
            f"{r.figures['big_fill_seconds']:.0f} s) "
            "into a template database; each sample drains N new actions in a FILE_COPY clone of it, after an ANALYZE "
            "(what autovacuum does on a live table once N rows arrive)."
        )
    r.note(
        "Drain contenders and their settings (each one worker process, each at its best documented setting for one "
        "worker): " + "; ".join(f"**{c.name}**: {c.settings}" for c in contenders) + "."
    )
    r.note(
        f"Drain samples: {samples} rounds; round k starts with contender k and goes on in the same cyclic order, so "
        "each contender runs early in one round and late in another (the machine's load and fsync latency drift). "
        "Figures are the median of the rounds with the slowest and fastest sample; ratios are ratios of medians. "
        "Every job body (the AOL's PROOF adapter and every other contender's job) calls the AOL's artifact_write "
        "(temporary file, fsync, rename, directory fsync) on about 220 bytes and SHA-256s it. Steady rate = the "
        "middle 80 % of completions (process start-up left out); the floor and the ceiling are timed in-process."
    )
    # Round trips, counted in a separate smaller drain of each database.
    pg_rt = round_trips(bench, bench.pg_database("roundtrips"), "roundtrips-pg")
    bench.drop(f"{DB_PREFIX}_roundtrips")
    lite_rt = round_trips(bench, bench.sqlite_database("roundtrips"), "roundtrips-sqlite")
    for name, result in (("PostgreSQL", pg_rt), ("SQLite", lite_rt)):
        r.add(
            "1 Drain",
            f"AOL on {name}: DB round trips per action (statements + BEGIN/COMMIT)",
            f"{result['round_trips']:.3f} ({result['statements']:.3f} statements, "
            f"{result['transactions']:.3f} transactions)",
        )
    for name, result in (("PostgreSQL", pg_rt), ("SQLite", lite_rt)):
        r.note(f"Statements per action on {name}, most frequent first: {result['top']}.")
    r.note(
        f"Round trips were counted in a separate drain of {pg_rt['n']:,} actions by bench/counted_manage.py "
        "(manage.py with an execute wrapper on every connection and counters on COMMIT/ROLLBACK; "
        "pg_stat_statements is not preloaded on this server). Each transaction costs a BEGIN and a COMMIT "
        f"round trip. That drain opened {pg_rt['connections']} PostgreSQL connection(s) in all."
    )
    profile_cost(bench)
    drain_at_defaults(bench)
    scenario_memory(bench)


def profile_cost(bench: Bench) -> None:
    """Where the daemon's own time per action goes: bench/profile_drain.py with a body that writes no file."""
    r, n = bench.results, bench.size["round_trip_n"]
    found = {}
    for mode in ("none", "cprofile"):
        url = bench.pg_database("profile")
        env = django_env(url, artifacts=bench.artifacts("profile"))
        with open(log_path("profile"), "a") as err:
            out = subprocess.run(
                [PYTHON, "-m", "bench.profile_drain", "--n", str(n), "--null-body", "--profile", mode],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=1800,
            )
        bench.drop(f"{DB_PREFIX}_profile")
        if out.returncode != 0:
            raise RuntimeError(f"bench/profile_drain.py failed ({out.returncode}); see {log_path('profile')}")
        found[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    plain = found["none"]
    own_cpu = plain["drain_cpu_us"] - plain["adapter_cpu_us"]
    r.cost = {**plain, "calls_per_action": found["cprofile"].get("calls_per_action", math.nan), "own_cpu_us": own_cpu}
    r.add(
        "1 Drain",
        "AOL's own cost per action, PostgreSQL, psycopg 3 (adapter writes no file): wall / CPU, both threads",
        f"{plain['drain_us']:.0f} µs / {plain['drain_cpu_us']:.0f} µs (of which the adapter's own "
        f"{plain['adapter_cpu_us']:.0f} µs)",
    )
    r.add(
        "1 Drain",
        "… Python function calls per action on the loop's thread (cProfile; stable under load)",
        f"{r.cost['calls_per_action']:.0f}",
    )
    r.add(
        "1 Drain",
        "… job body alone in the same process (artifact_write: fsyncs): wall / CPU",
        f"{plain['body_us']:.0f} µs / {plain['body_cpu_us']:.0f} µs",
    )
    phases = "; ".join(f"{label} {value:.0f} µs" for label, value in plain["phases_us"].items())
    statements = ", ".join(f"{value:.3f} {kind}" for kind, value in list(plain["statements"].items())[:6])
    r.note(
        f"The AOL's own cost per action (bench/profile_drain.py --null-body, {n:,} actions, one tick, in-process, "
        "PostgreSQL through psycopg 3): the PROOF adapter SHA-256s its artifact and writes nothing, so what is left "
        f"is the daemon's. Wall per phase (nested: dispatch contains the hand-over and the success): {phases}. "
        f"Statements per action: {statements}."
    )


#: AOL_MAX_ACTIONS_PER_TICK's default (orchestration/conf.py): how many actions finish together per tick.
DEFAULT_PER_TICK = 3


def drain_at_defaults(bench: Bench) -> None:
    """A daemon with no flags (AOL_MAX_ACTIONS_PER_TICK=3 every AOL_TICK_INTERVAL_SECONDS=5): its pace by design."""
    r, n = bench.results, bench.size["default_n"]
    url = bench.pg_database("defaults")
    db = Database(url)
    env = django_env(url, artifacts=bench.artifacts("defaults"))
    bench.enqueue_file(env, n, prefix="defaults", log="defaults-enqueue")
    daemon = start(["manage.py", "run_aol_daemon", "--proof"], env, log="defaults")
    try:
        wait_drained(db, daemon, n=n * 10, log="defaults")
        done = sorted(action_done_times(db))
    finally:
        stop(daemon)
        db.close()
        bench.drop(f"{DB_PREFIX}_defaults")
    # Actions finish in bursts of one tick's worth: from the first burst to the last, the actions of
    # every burst but the first were done (counting all of them would add a burst and overstate the pace).
    pace = rate(len(done) - DEFAULT_PER_TICK, done[-1] - done[0]) if len(done) > DEFAULT_PER_TICK else math.nan
    r.figures["default_rate"] = pace
    r.add(
        "1 Drain",
        f"AOL at default settings (`run_aol_daemon --proof`, no flags), {n} actions, first to last tick's burst",
        f"{pace:.2f}/s",
    )
    r.note(
        "At its defaults a daemon runs at most AOL_MAX_ACTIONS_PER_TICK = 3 actions per tick and sleeps "
        "AOL_TICK_INTERVAL_SECONDS = 5 s after a tick that used its whole budget (a wake-up on enqueue ends the "
        "sleep only after a tick that did not): 3 / 5 s = 0.6 actions/s by design, a drip that keeps a REAL "
        "adapter's calls to the outside world slow and the console readable. For throughput raise both, as every "
        f"drain figure here does: `run_aol_daemon {' '.join(bench.drain_args()[1:])}`."
    )


def scenario_memory(bench: Bench) -> None:
    r, n = bench.results, bench.size["n"]
    if bench.size["memory_n"] <= n:
        pg = drain_aol_pg(bench, "memory", "psycopg")
    else:
        pg = drain_aol(bench, bench.pg_database("memory"), "memory", memory=True)
        bench.drop(f"{DB_PREFIX}_memory")
    r.add("8 Memory", f"daemon RSS after draining {n:,} actions (PostgreSQL)", f"{pg['rss_n'] / 2**20:.1f} MiB")
    if "rss_memory_n" in pg:
        m = bench.size["memory_n"]
        growth = (pg["rss_memory_n"] - pg["rss_n"]) / 2**20
        r.add("8 Memory", f"daemon RSS after draining {m:,} actions", f"{pg['rss_memory_n'] / 2**20:.1f} MiB")
        r.add("8 Memory", f"RSS growth from {n:,} to {m:,} actions", f"{growth:+.1f} MiB", "<= 10 MB", growth <= 10)
        r.add(
            "1 Drain",
            f"AOL on PostgreSQL: steady rate over the next {m - n:,} actions (same process)",
            fmt_rate(pg["steady_memory_n"]),
        )
    else:
        r.note("Memory: the 100k-action RSS figure is only measured in the full run.")


# --- 3. Enqueue -----------------------------------------------------------------------------------

ENQ_AOL_PG3 = "AOL action_enqueue, PostgreSQL, psycopg 3"
ENQ_AOL_PG2 = "AOL action_enqueue, PostgreSQL, psycopg2"
ENQ_RAW = "raw psycopg INSERT, autocommit"
ENQ_MANY_PG3 = "AOL action_enqueue_many, PostgreSQL, psycopg 3"
ENQ_MANY_PG2 = "AOL action_enqueue_many, PostgreSQL, psycopg2"
ENQ_COPY = "raw psycopg COPY, one transaction"
#: (label, job, database kind, driver); one at a time first, then in bulk.
ENQUEUE_CASES = [
    (ENQ_AOL_PG3, "enqueue-aol-one", "app", "psycopg"),
    (ENQ_AOL_PG2, "enqueue-aol-one", "app", "psycopg2"),
    ("AOL action_enqueue, SQLite", "enqueue-aol-one", "sqlite", "psycopg"),
    (ENQ_RAW, "floor-enqueue-one", "empty", "psycopg"),
    ("django-tasks-db Task.enqueue()", "enqueue-dtdb-one", "peers", "psycopg"),
    ("Procrastinate task.defer()", "enqueue-procrastinate-one", "peers", "psycopg"),
    (ENQ_MANY_PG3, "enqueue-aol-many", "app", "psycopg"),
    (ENQ_MANY_PG2, "enqueue-aol-many", "app", "psycopg2"),
    ("AOL action_enqueue_many, SQLite", "enqueue-aol-many", "sqlite", "psycopg"),
    (ENQ_COPY, "floor-enqueue-bulk", "empty", "psycopg"),
    ("django-tasks-db bulk_create of its rows", "enqueue-dtdb-bulk", "peers", "psycopg"),
    ("Procrastinate task.batch_defer()", "enqueue-procrastinate-bulk", "peers", "psycopg"),
]


def scenario_enqueue(bench: Bench) -> None:
    r, n, samples = bench.results, bench.size["n"], bench.size["samples"]
    print(
        f"\n== 3. Enqueue: {n:,} one at a time (a transaction each) and {n:,} in bulk, {samples} rotated rounds ==",
        flush=True,
    )
    rates: dict[str, list[float]] = {label: [] for label, *_ in ENQUEUE_CASES}

    def measure(label: str, job_name: str, kind: str, driver: str) -> float:
        if kind == "sqlite":
            url = bench.sqlite_database("enqueue")
        else:
            template = {"app": APP_TEMPLATE, "peers": PEER_TEMPLATE, "empty": None}[kind]
            url = bench.pg_database("enqueue", template=template)
        settings = PEER_SETTINGS if kind == "peers" else "aicmo_site.settings"
        env = django_env(url, artifacts=bench.artifacts("enqueue"), settings=settings, driver=driver)
        try:
            result = job(job_name, env, "--n", str(n))
        finally:
            bench.drop(f"{DB_PREFIX}_enqueue")
        return rate(result["n"], result["seconds"])

    for number in range(samples):
        for label, job_name, kind, driver in rotated(ENQUEUE_CASES, number):
            rates[label].append(measure(label, job_name, kind, driver))
    figures = {label: median(values) for label, values in rates.items()}
    r.enqueue = {"medians": figures, "rates": rates}
    # The command an operator runs, start-up included.
    url = bench.pg_database("enqueue")
    env = django_env(url, artifacts=bench.artifacts("enqueue"))
    started = time.perf_counter()
    bench.enqueue_file(env, n, prefix="cmd", log="enqueue-command")
    command_seconds = time.perf_counter() - started
    bench.drop(f"{DB_PREFIX}_enqueue")
    r.figures["enqueue_command_seconds"] = command_seconds

    for label, *_ in ENQUEUE_CASES:
        target, met = "", None
        if label in (ENQ_MANY_PG3, ENQ_MANY_PG2):
            target, met = ">= 10,000/s", figures[label] >= 10_000
        r.add("3 Enqueue", f"{label}, median (min–max)", summary(rates[label]), target, met)
    floor_one = figures[ENQ_RAW]
    for ours in (ENQ_AOL_PG3, ENQ_AOL_PG2):
        ratio = figures[ours] / floor_one
        r.add("3 Enqueue", f"ratio {ours} / {ENQ_RAW}", fmt_ratio(ratio), ">= 0.67x", ratio >= 1 / 1.5)
    for peer in ("django-tasks-db Task.enqueue()", "Procrastinate task.defer()"):
        r.add("3 Enqueue", f"ratio {ENQ_AOL_PG3} / {peer}", fmt_ratio(figures[ENQ_AOL_PG3] / figures[peer]))
    for peer in ("django-tasks-db bulk_create of its rows", "Procrastinate task.batch_defer()", ENQ_COPY):
        r.add("3 Enqueue", f"ratio {ENQ_MANY_PG3} / {peer}", fmt_ratio(figures[ENQ_MANY_PG3] / figures[peer]))
    r.add(
        "3 Enqueue",
        f"`manage.py aol_enqueue --from-file` with {n:,} lines (start-up included)",
        f"{command_seconds:.1f} s ({fmt_rate(rate(n, command_seconds))})",
    )
    r.note(
        f"Enqueue loops are timed in-process (no start-up), {samples} rotated rounds, medians. One at a time: "
        "action_enqueue, like django-tasks-db and the raw floor, sends a single autocommit INSERT (INSERT … ON "
        "CONFLICT (idempotency_key) DO NOTHING RETURNING); the floor's table has fewer columns and indexes, and its "
        "psycopg cursor binds parameters on the server and prepares the statement after five runs, while Django "
        "binds them client-side and prepares nothing. In bulk, action_enqueue_many sends each batch of up to 5,000 "
        "items as one INSERT … SELECT from a JSON document. django-tasks-db has no bulk API, so its bulk figure is "
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
    "/metrics scrape": 0.05,
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
        why = (
            f"{figures['queries']} queries per request; the slowest of the last request took {figures['slowest']}"
            if figures["slowest"]
            else ""
        )
        r.add(
            "7 Console",
            f"{label} p95",
            fmt_ms(figures["p95"]),
            f"<= {limit * 1000:g} ms",
            figures["p95"] <= limit,
            why=why,
        )
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
        "- Drivers: Django prefers psycopg 3 when it is installed, as it is in the benchmark's environment; the "
        "rows that say psycopg2 hide psycopg 3 from the process (bench/drivers/psycopg2_only), as the app's own "
        "environment (requirements.txt) has only psycopg2. The peers and the raw floor use psycopg 3.",
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
    lines += ["", "## Targets", ""] + targets_lines(bench)
    lines += ["", "## Notes", ""] + [f"- {note}" for note in bench.results.notes]
    return "\n".join(lines) + "\n"


def targets_lines(bench: Bench) -> list[str]:
    """Every target, met or missed; a miss with the measured breakdown of what limits it."""
    lines = []
    for row in ordered_rows(bench):
        if row.met is None:
            continue
        verdict = "met" if row.met else "**missed**"
        why = f" What limits it: {row.why}" if not row.met and row.why else ""
        lines.append(f"- {verdict}: {row.measure}: {row.figure} (target {row.target}).{why}")
    return lines or ["- (no targets in the scenarios run)"]


def explain_misses(bench: Bench) -> None:
    """Attach to each missed target the breakdown measured in this run."""
    r = bench.results
    cost = r.cost
    drain = r.drain.get("medians", {})
    rates = r.drain.get("rates", {})
    ceiling = drain.get(CEILING, math.nan)
    body_us = 1e6 / ceiling if ceiling else math.nan

    def per_job(name: str) -> float:
        return 1e6 / drain[name] if drain.get(name) else math.nan

    own = ""
    if cost:
        phases = "; ".join(f"{label} {value:.0f} µs" for label, value in cost["phases_us"].items())
        own = (
            f"The AOL's own cost, measured with a body that writes nothing, is {cost['drain_us']:.0f} µs wall / "
            f"{cost['own_cpu_us']:.0f} µs CPU per action ({cost['calls_per_action']:.0f} Python calls on the loop's "
            f"thread; wall per phase, nested: {phases})."
        )
    for row in r.rows:
        if row.met is not False or row.why:
            continue
        if row.scenario == "1 Drain" and row.measure.startswith("ratio with"):
            big = r.drain["big"]
            row.why = (
                f"per action {per_job(big):.0f} µs with the finished rows, {per_job(AOL_PG3):.0f} µs without "
                f"(rounds: {summary(rates[big])} vs {summary(rates[AOL_PG3])})."
            )
        elif row.scenario == "1 Drain" and row.measure.startswith("ratio "):
            ours, theirs = row.measure.removeprefix("ratio ").split(" / ", 1)
            row.why = (
                f"per job: {ours} {per_job(ours):.0f} µs, "
                + ("" if theirs == CEILING else f"{theirs} {per_job(theirs):.0f} µs, ")
                + f"the job body alone {body_us:.0f} µs; beyond the body the AOL spends "
                + f"{per_job(ours) - body_us:.0f} µs"
                + ("" if theirs == CEILING else f" and {theirs} {per_job(theirs) - body_us:.0f} µs")
                + f". {own}"
            )
        elif row.scenario == "3 Enqueue":
            row.why = (
                "action_enqueue validates the payload through its adapter and sends one INSERT … ON CONFLICT DO "
                "NOTHING RETURNING through Django (client-side binding, no prepared statement) into a table with "
                "more columns and indexes than the floor's; both wait for the same commit."
            )


README_START = "<!-- bench:start: generated by bench/run.py from a full run; edit bench/run.py, not this block -->"
README_END = "<!-- bench:end -->"


def readme_block(bench: Bench, started: datetime) -> str:
    """The README's performance figures: the report's headline rows, with the flags behind them."""
    info = machine(bench)
    r = bench.results
    lines = [
        README_START,
        f"Measured by `make bench` ({bench.mode} run, {started:%Y-%m-%d %H:%M} UTC, code `{info['code']}`; "
        f"{info['cores'].split(',')[0]}, PostgreSQL {info['postgresql'].split()[1]} on the same host, shared with "
        "other work). Each drain contender is one worker process draining "
        f"N = {bench.size['n']:,} jobs whose body writes the same ~220-byte artifact with two fsyncs; the AOL runs "
        f"as `run_aol_daemon {' '.join(bench.drain_args()[1:])}`. Figures are medians of "
        f"{bench.size['samples']} rounds run in rotated order (min–max in "
        "[`bench/results/latest.md`](bench/results/latest.md)), ratios are ratios of medians from the same run; "
        "how each is taken and what each peer runs with is in [`bench/README.md`](bench/README.md).",
        "",
    ]
    default_rate = r.figures.get("default_rate")
    if default_rate is not None:
        lines += [
            f"**At default settings a daemon drains {default_rate:.2f} actions/s, by design**: "
            "AOL_MAX_ACTIONS_PER_TICK = 3 actions per tick, then AOL_TICK_INTERVAL_SECONDS = 5 s of sleep "
            "(3 / 5 s = 0.6/s), a pace meant for REAL adapters that talk to the outside world. Every drain "
            f"figure below lifts both limits: `--max-actions {bench.batch} --interval 0.01`.",
            "",
        ]
    lines += ["| | figure | target | |", "|---|---|---|---|"]
    for row in ordered_rows(bench):
        headline = row.met is not None or "median" in row.measure or "default settings" in row.measure
        if not headline:
            continue
        met = "" if row.met is None else ("met" if row.met else "missed")
        lines.append(f"| {row.measure} | {row.figure} | {row.target} | {met} |")
    misses = [row for row in ordered_rows(bench) if row.met is False]
    if misses:
        lines += ["", "What limits the misses (measured in the same run):", ""]
        lines += [f"- **{row.measure}**: {row.why or 'see bench/results/latest.md.'}" for row in misses]
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(block: str) -> bool:
    """Replace the block between the markers in README.md; False if the markers are missing."""
    path = ROOT / "README.md"
    text = path.read_text()
    start, end = text.find("<!-- bench:start"), text.find(README_END)
    if start < 0 or end < 0:
        return False
    path.write_text(text[:start] + block + text[end + len(README_END) :])
    return True


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
    "enqueue": scenario_enqueue,
    "idle": scenario_idle,
    "latency": scenario_latency,
    "controls": scenario_controls,
    "console": scenario_console,
    "api": scenario_api,  # bench/api.py
    "real": scenario_real,  # bench/real.py
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller sizes; finishes in under 3 minutes.")
    parser.add_argument("--only", help=f"Comma-separated scenarios to run (default: all of {', '.join(SCENARIOS)}).")
    parser.add_argument("--n", type=int, help="Override N (actions per drain and enqueue).")
    parser.add_argument("--drain-batch", type=int, default=500, help="run_aol_daemon --max-actions when draining.")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="Server URL, no database.")
    parser.add_argument("--output", default=str(BENCH / "results" / "latest.md"), help="Markdown report path.")
    parser.add_argument(
        "--readme",
        action="store_true",
        help="Rewrite README.md's performance block from this run even if it is not a complete full run.",
    )
    parser.add_argument(
        "--no-readme", action="store_true", help="Leave README.md alone (a complete full run rewrites its block)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the aicmo_bench_* databases and files afterwards.")
    args = parser.parse_args()
    # "peers" was a scenario of its own; the peers now run in the drain's rotation.
    selected = list(SCENARIOS)
    if args.only:
        selected = ["drain" if name == "peers" else name for name in args.only.split(",")]
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
    explain_misses(bench)
    print_table(bench)
    text = report(bench, started, load_before, seconds)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"\nWritten to {output} ({seconds / 60:.1f} min).")
    complete = not args.quick and not args.only and not args.n and not bench.results.failed
    if args.readme or (complete and not args.no_readme):
        if update_readme(readme_block(bench, started)):
            print("README.md's performance figures (between the bench:start and bench:end markers) updated.")
        else:
            print("README.md has no bench:start / bench:end markers; not updated.", file=sys.stderr)
    if bench.results.failed:
        print(f"Scenario(s) that failed: {', '.join(bench.results.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
