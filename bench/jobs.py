"""In-process benchmark jobs: ``python -m bench.jobs NAME [options]`` prints one JSON line.

Run by run.py in a subprocess whose environment selects the database (DATABASE_URL) and the
settings (the app's, or bench.peer_settings for the peers). Timings cover the measured loop
only, never Python or Django start-up.
"""

import argparse
import json
import os
import random
import sys
import time
import uuid

import django

from bench.lib import aol_payload, percentile

JOBS = {}


def register(function):
    JOBS[function.__name__.replace("_", "-")] = function
    return function


def timed(loop) -> float:
    started = time.perf_counter()
    loop()
    return time.perf_counter() - started


# --- Enqueue --------------------------------------------------------------------------------------


@register
def enqueue_aol_one(args) -> dict:
    """N x action_enqueue, each its own transaction."""
    from orchestration.services.enqueue import action_enqueue

    def loop():
        for i in range(args.n):
            action_enqueue(action_type="POST_SOCIAL", payload=aol_payload(i), idempotency_key=f"one-{i:06d}")

    return {"seconds": timed(loop), "n": args.n}


@register
def enqueue_aol_many(args) -> dict:
    """One action_enqueue_many call with N items."""
    from orchestration.services.enqueue import action_enqueue_many

    items = [
        {"action_type": "POST_SOCIAL", "payload": aol_payload(i), "idempotency_key": f"{args.prefix}-{i:06d}"}
        for i in range(args.n)
    ]
    report = None

    def loop():
        nonlocal report
        report = action_enqueue_many(items=items)

    seconds = timed(loop)
    assert len(report.created) == args.n, report
    return {"seconds": seconds, "n": args.n}


@register
def enqueue_dtdb_one(args) -> dict:
    """N x Task.enqueue() on django-tasks-db's DatabaseBackend (one INSERT each, autocommit)."""
    from bench.peerjobs.tasks import dtdb_proof_job

    def loop():
        for i in range(args.n):
            dtdb_proof_job.enqueue(f"one-{i:06d}")

    return {"seconds": timed(loop), "n": args.n}


@register
def enqueue_dtdb_bulk(args) -> dict:
    """django-tasks-db has no bulk API: bulk_create of its model rows, built as its backend builds them."""
    from django.db import transaction
    from django_tasks import default_task_backend
    from django_tasks.utils import normalize_json
    from django_tasks_db.models import DBTaskResult, get_date_max

    from bench.peerjobs.tasks import dtdb_proof_job

    backend = default_task_backend

    def loop():
        rows = [
            DBTaskResult(
                id=backend._get_id(),
                args_kwargs=normalize_json({"args": [f"{args.prefix}-{i:06d}"], "kwargs": {}}),
                priority=dtdb_proof_job.priority,
                task_path=dtdb_proof_job.module_path,
                queue_name=dtdb_proof_job.queue_name,
                # Its pre_save signal turns "no run_after" into the maximum date; bulk_create sends no signal.
                run_after=dtdb_proof_job.run_after or get_date_max(),
                backend_name=backend.alias,
            )
            for i in range(args.n)
        ]
        with transaction.atomic():
            DBTaskResult.objects.bulk_create(rows, batch_size=1000)

    return {"seconds": timed(loop), "n": args.n}


@register
def enqueue_procrastinate_one(args) -> dict:
    """N x task.defer() through Procrastinate's Django connector (one transaction each)."""
    from bench.peerjobs.tasks import procrastinate_proof_job

    def loop():
        for i in range(args.n):
            procrastinate_proof_job.defer(key=f"one-{i:06d}")

    return {"seconds": timed(loop), "n": args.n}


@register
def enqueue_procrastinate_bulk(args) -> dict:
    """One task.batch_defer() with N jobs."""
    from bench.peerjobs.tasks import procrastinate_proof_job

    def loop():
        procrastinate_proof_job.batch_defer(*({"key": f"{args.prefix}-{i:06d}"} for i in range(args.n)))

    return {"seconds": timed(loop), "n": args.n}


# --- The raw psycopg floor ------------------------------------------------------------------------

FLOOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_jobs (
    id bigserial PRIMARY KEY,
    key text NOT NULL UNIQUE,
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'todo',
    attempts integer NOT NULL DEFAULT 0,
    sha256 text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at timestamptz
);
CREATE INDEX IF NOT EXISTS floor_jobs_todo ON floor_jobs (id) WHERE status = 'todo';
"""


def _floor_connect():
    import psycopg

    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    conn.execute(FLOOR_SCHEMA)
    return conn


@register
def floor_enqueue_one(args) -> dict:
    """N single-row INSERTs, each committed on its own (autocommit)."""
    from psycopg.types.json import Jsonb

    conn = _floor_connect()

    def loop():
        for i in range(args.n):
            conn.execute(
                "INSERT INTO floor_jobs (key, payload) VALUES (%s, %s)", (f"one-{i:06d}", Jsonb(aol_payload(i)))
            )

    return {"seconds": timed(loop), "n": args.n}


@register
def floor_enqueue_bulk(args) -> dict:
    """N rows by COPY in one transaction."""
    conn = _floor_connect()

    def loop():
        with (
            conn.transaction(),
            conn.cursor() as cursor,
            cursor.copy("COPY floor_jobs (key, payload) FROM STDIN") as copy,
        ):
            for i in range(args.n):
                copy.write_row((f"{args.prefix}-{i:06d}", json.dumps(aol_payload(i))))

    return {"seconds": timed(loop), "n": args.n}


@register
def floor_drain(args) -> dict:
    """Claim k jobs with UPDATE … FOR UPDATE SKIP LOCKED … RETURNING, run them, complete, commit."""
    from bench.body import proof_body

    conn = _floor_connect()
    claim = (
        "UPDATE floor_jobs SET status = 'doing', attempts = attempts + 1 WHERE id IN ("
        "SELECT id FROM floor_jobs WHERE status = 'todo' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT %s"
        ") RETURNING id, key"
    )
    done = "UPDATE floor_jobs SET status = 'done', sha256 = %s, done_at = clock_timestamp() WHERE id = %s"
    done_many = (
        "UPDATE floor_jobs SET status = 'done', sha256 = d.sha, done_at = clock_timestamp() "
        "FROM unnest(%s::bigint[], %s::text[]) AS d(id, sha) WHERE floor_jobs.id = d.id"
    )
    jobs = 0

    def loop():
        nonlocal jobs
        while True:
            with conn.transaction():
                claimed = conn.execute(claim, (args.k,)).fetchall()
                if not claimed:
                    return
                digests = [proof_body(key=key, folder=f"floor_k{args.k}") for _, key in claimed]
                if len(claimed) == 1:
                    conn.execute(done, (digests[0], claimed[0][0]))
                else:
                    conn.execute(done_many, ([pk for pk, _ in claimed], digests))
            jobs += len(claimed)

    seconds = timed(loop)
    return {"seconds": seconds, "n": jobs}


# --- The ceiling, and which driver a process got ----------------------------------------------------


@register
def body_only(args) -> dict:
    """The job body alone, N times, no database: the most any contender could drain."""
    from bench.body import proof_body

    def loop():
        for i in range(args.n):
            proof_body(key=f"{args.prefix}-{i:07d}", folder="body_only")

    return {"seconds": timed(loop), "n": args.n}


@register
def driver(args) -> dict:
    """The module Django's PostgreSQL backend talks through in this environment."""
    from django.db import connection

    return {"driver": connection.Database.__name__, "version": connection.Database.__version__.split()[0]}


# --- Idle cost ------------------------------------------------------------------------------------


@register
def idle_tick(args) -> dict:
    """Statements per idle tick (what tests/daemon/test_loop.py pins), over many ticks."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from orchestration.daemon import Daemon, DaemonConfig

    daemon = Daemon(DaemonConfig.from_settings(owner="bench:idle"), out=lambda line: None)
    daemon.tick(0)  # acquires the lease; later ticks renew it
    with CaptureQueriesContext(connection) as captured:
        for number in range(1, args.ticks + 1):
            daemon.tick(number)
    daemon.release_lease()
    keywords = [query["sql"].split()[0].upper() for query in captured.captured_queries]
    control = [k for k in keywords if k in {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}]
    return {
        "ticks": args.ticks,
        "statements": len(keywords) - len(control),
        "round_trips": len(keywords),
        "kinds": sorted(set(keywords)),
    }


# --- Latency --------------------------------------------------------------------------------------


@register
def latency(args) -> dict:
    """Enqueue-to-done with a running daemon at its default interval; up to one tick's worth at a time.

    Each round enqueues as many actions as one tick takes, each at a random moment within
    ``--spread`` seconds (default: one interval, so that arrivals are spread evenly over the tick
    cycle of a polling daemon), and waits until all have run.
    """
    from orchestration.conf import aol
    from orchestration.models import Action, ActionStatus, ExecutionLog
    from orchestration.services.enqueue import action_enqueue

    interval, per_tick = aol.tick_interval_seconds, aol.max_actions_per_tick
    rng = random.Random(6)
    latencies: list[float] = []
    while len(latencies) < args.samples:
        batch = min(per_tick, args.samples - len(latencies))
        offsets = sorted(rng.uniform(0, args.spread or interval) for _ in range(batch))
        began, keys = time.monotonic(), []
        for offset in offsets:
            time.sleep(max(0.0, began + offset - time.monotonic()))
            key = f"latency-{uuid.uuid4().hex}"
            action_enqueue(action_type="POST_SOCIAL", payload=aol_payload(len(latencies)), idempotency_key=key)
            keys.append(key)
        deadline = time.monotonic() + 4 * interval + 10
        while Action.objects.filter(idempotency_key__in=keys, status=ActionStatus.SUCCESS).count() < len(keys):
            if time.monotonic() > deadline:
                raise TimeoutError("actions not run within four tick intervals")
            time.sleep(0.05)
        for pk, created_at in Action.objects.filter(idempotency_key__in=keys).values_list("pk", "created_at"):
            done = ExecutionLog.objects.filter(action_id=pk).order_by("id").values_list("ts", flat=True).first()
            latencies.append((done - created_at).total_seconds())
    return {
        "samples": len(latencies),
        "interval_seconds": interval,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "max": max(latencies),
    }


# --- Console at scale -----------------------------------------------------------------------------


def _shorten(sql: str) -> str:
    """The start of a statement and its tail (FROM, WHERE, ORDER BY), without the column list."""
    if len(sql) <= 300:
        return sql
    cut = sql.find(" FROM ")
    return f"{sql[:40]} … {sql[cut:][:260]}" if cut > 0 else sql[:300]


def _count_kind(sql: str) -> str:
    """What a counting query reads: a capped subquery, the rows a WHERE selects, or the whole table."""
    upper = sql.upper()
    kind = "COUNT ... GROUP BY" if "GROUP BY" in upper else "COUNT(*)"
    scope = "capped by LIMIT" if " LIMIT " in upper else "with WHERE" if " WHERE " in upper else "whole table"
    return f"{kind} {scope}"


@register
def console(args) -> dict:
    """p50/p95 of the status selector and the console pages through Django's test client."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import NoReverseMatch, get_resolver, reverse

    from orchestration.models import Action, ActionStatus
    from orchestration.services.status import status_snapshot

    user = get_user_model().objects.create_superuser("bench-admin", "bench@example.com", uuid.uuid4().hex)
    client = Client()
    client.force_login(user)
    action = Action.objects.filter(status=ActionStatus.DLQ).order_by("-id").first()
    targets: dict[str, object] = {"status_snapshot() selector": status_snapshot}
    names = [n for n in get_resolver().reverse_dict if isinstance(n, str)]
    found = {}
    for name in ("orchestration:status", "orchestration:status_json", "orchestration:status-json"):
        try:
            found[name] = reverse(name)
        except NoReverseMatch:
            pass
    if "orchestration:status" in found:
        targets["status page"] = found["orchestration:status"]
    for name in ("orchestration:status_json", "orchestration:status-json"):
        if name in found:
            targets["status JSON"] = found[name]
            break
    # The console's other views (issue 15); absent on branches without them.
    for label, name, view_args, query in (
        ("console actions", "orchestration:actions", [], ""),
        ("console actions, status=DLQ", "orchestration:actions", [], "?status=DLQ"),
        ("console action page", "orchestration:action", [action.pk], ""),
        ("console attention", "orchestration:attention", [], ""),
        ("console calendar", "orchestration:calendar", [], ""),
        ("console audit", "orchestration:audit", [], ""),
    ):
        try:
            targets[label] = reverse(name, args=view_args) + query
        except NoReverseMatch:
            pass
    changelist = reverse("admin:orchestration_action_changelist")
    targets.update(
        {
            "/metrics scrape": reverse("metrics"),
            "admin changelist": changelist,
            "admin changelist, status=DLQ": f"{changelist}?status__exact=DLQ",
            "admin changelist, key search": f"{changelist}?q={action.idempotency_key}",
            "admin action page": reverse("admin:orchestration_action_change", args=[action.pk]),
        }
    )
    results = {}
    for label, target in targets.items():
        timings, queries, counts = [], 0, []
        for attempt in range(args.requests + args.warmup):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                if callable(target):
                    target()
                else:
                    response = client.get(target)
                    if response.status_code != 200:
                        raise RuntimeError(f"GET {target} answered {response.status_code}")
                elapsed = time.perf_counter() - started
            if attempt >= args.warmup:
                timings.append(elapsed)
            queries = len(captured)
            slowest = max(captured.captured_queries, key=lambda q: float(q["time"]), default=None)
            counts = sorted({_count_kind(q["sql"]) for q in captured.captured_queries if "COUNT(" in q["sql"].upper()})
        results[label] = {
            "p50": percentile(timings, 50),
            "p95": percentile(timings, 95),
            "queries": queries,
            "counts": counts,
            "slowest": f"{float(slowest['time']) * 1000:.0f} ms: {_shorten(slowest['sql'])}" if slowest else "",
        }
    return {"results": results, "url_names": sorted(n for n in names if "status" in n)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs")
    parser.add_argument("name", choices=sorted(JOBS))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--prefix", default="bulk")
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--spread", type=float, default=None, help="latency: arrivals within this many seconds")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    django.setup()
    result = JOBS[args.name](args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
