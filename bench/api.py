"""Scenario 9, the planner's HTTP API served by gunicorn (``bench/run.py --only api``).

Two gunicorn workers with deploy/gunicorn.conf.py (gthread, 4 threads each), as deploy/aicmo-web.service
runs them, on a fresh PostgreSQL database. The client keeps its connections open (HTTP/1.1 keep-alive,
``http.client``), one per client thread, and sends a real Bearer token.

- Enqueue: POST /api/v1/actions, one action per request, from 4 client threads; then
  POST /api/v1/actions/batch, 1,000 actions per request, from 2 client threads (one per worker).
  Figures: actions per second over the whole timed run (target for batches: >= 10,000/s).
- Reads at 1 M actions: the queue filled by INSERT ... SELECT generate_series (run.py's FILL_ACTIONS,
  the console scenario's status mix), VACUUM ANALYZE, then from one keep-alive connection, after warm-up,
  p50/p95 of GET /api/v1/actions/{id} for random ids (target p95 <= 20 ms) and of a filtered list page
  GET /api/v1/actions?status=DLQ&type=POST_SOCIAL&after=<random id> (target p95 <= 50 ms).

The per-token write rate limit is turned off for the run (AOL_API_WRITES_PER_MINUTE=0): it exists to
stop a runaway planner, not to be measured.
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

from bench.lib import PYTHON, ROOT, Database, django_env, log_path, percentile, wait_for

if TYPE_CHECKING:
    from bench.run import Bench

SIZES = {
    # single: requests of one action; batches: requests of 1,000; read_actions: rows for the reads;
    # reads: timed requests of each read.
    "full": {"single": 10_000, "batches": 50, "read_actions": 1_000_000, "reads": 500},
    "quick": {"single": 500, "batches": 5, "read_actions": 100_000, "reads": 100},
}
BATCH = 1_000
SINGLE_CLIENTS = 4
BATCH_CLIENTS = 2
WORKERS = 2
WARM_UP = 20
TARGETS = {"batch": 10_000.0, "get": 0.020, "list": 0.050}
GUNICORN_CONFIG = ROOT / "deploy" / "gunicorn.conf.py"
#: As deploy/aicmo.env.example's DATABASE_URL: each server thread keeps its connection.
CONN_MAX_AGE = "?conn_max_age=60"

MAKE_TOKEN = """
from orchestration.services.tokens import token_create
token, secret = token_create(name="bench", scopes=["read", "propose"], actor="bench", reason="benchmark")
print(secret)
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn with deploy/gunicorn.conf.py and ``WORKERS`` workers on a free port."""

    def __init__(self, env: dict, *, log: str):
        self.port = free_port()
        out = open(log_path(log), "w")  # noqa: SIM115  (inherited by the child)
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "--config",
                str(GUNICORN_CONFIG),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(WORKERS),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        self.log = log
        wait_for(self.ready, timeout=60, interval=0.1, what="gunicorn answering /healthz")

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({self.process.returncode}); see {log_path(self.log)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Client:
    """One keep-alive connection with the token; ``call`` returns (status, body, seconds)."""

    def __init__(self, port: int, secret: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, bytes, float]:
        data = None if body is None else json.dumps(body).encode()
        started = time.perf_counter()
        self.conn.request(method, path, body=data, headers=self.headers)
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - started
        if response.will_close:
            raise RuntimeError(f"{method} {path}: the server closed the connection (no keep-alive)")
        return response.status, payload, elapsed

    def close(self) -> None:
        self.conn.close()


def make_token(env: dict) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", MAKE_TOKEN], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"creating the API token failed: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout.strip().splitlines()[-1]


def in_threads(count: int, work) -> float:
    """Run ``work(index)`` in ``count`` threads started together; the wall time of all of them."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count + 1)

    def run(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as exc:  # reported below, after every thread has ended
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def proposal(prefix: str, number: int) -> dict:
    return {
        "action_type": "POST_SOCIAL",
        "payload": {"platform": "twitter", "message": f"Benchmark post {number:07d}"},
        "idempotency_key": f"{prefix}-{number:07d}",
    }


def enqueue(bench: Bench, size: dict) -> None:
    from bench.run import fmt_rate, rate

    r = bench.results
    url = bench.pg_database("api")
    env = django_env(f"{url}{CONN_MAX_AGE}", artifacts=bench.artifacts("api"), AOL_API_WRITES_PER_MINUTE="0")
    secret = make_token(env)
    server = Server(env, log="api-gunicorn")
    db = Database(url)
    try:
        single = size["single"]
        per_client = single // SINGLE_CLIENTS

        def one_by_one(index: int) -> None:
            client = Client(server.port, secret)
            for number in range(index * per_client, (index + 1) * per_client):
                status, body, _ = client.call("POST", "/api/v1/actions", proposal("single", number))
                if status != 201:
                    raise RuntimeError(f"POST /api/v1/actions answered {status}: {body[:300]!r}")
            client.close()

        seconds = in_threads(SINGLE_CLIENTS, one_by_one)
        done = per_client * SINGLE_CLIENTS
        r.add(
            "9 API",
            f"enqueue, 1 action per request, {SINGLE_CLIENTS} keep-alive clients ({done:,} requests)",
            fmt_rate(rate(done, seconds)),
        )

        batches = size["batches"]
        per_batch_client = batches // BATCH_CLIENTS

        def in_batches(index: int) -> None:
            client = Client(server.port, secret)
            for batch in range(index * per_batch_client, (index + 1) * per_batch_client):
                items = [proposal("batch", batch * BATCH + i) for i in range(BATCH)]
                status, body, _ = client.call("POST", "/api/v1/actions/batch", {"actions": items})
                if status != 201 or len(json.loads(body).get("created", [])) != BATCH:
                    raise RuntimeError(f"POST /api/v1/actions/batch answered {status}: {body[:300]!r}")
            client.close()

        seconds = in_threads(BATCH_CLIENTS, in_batches)
        done = per_batch_client * BATCH_CLIENTS * BATCH
        figure = rate(done, seconds)
        r.add(
            "9 API",
            f"enqueue, {BATCH:,} actions per batch request, {BATCH_CLIENTS} keep-alive clients ({done:,} actions)",
            fmt_rate(figure),
            f">= {TARGETS['batch']:,.0f}/s",
            figure >= TARGETS["batch"],
        )
        stored = db.scalar("SELECT count(*) FROM aol_actions")
        if stored != per_client * SINGLE_CLIENTS + done:
            r.note(f"API: {stored} actions stored, not the {per_client * SINGLE_CLIENTS + done} sent")
    finally:
        server.stop()
        db.close()
        if not bench.args.keep:
            bench.drop(f"{bench_db_prefix()}_api")


def bench_db_prefix() -> str:
    from bench.run import DB_PREFIX

    return DB_PREFIX


def reads(bench: Bench, size: dict) -> None:
    from bench.run import FILL_ACTIONS, fmt_ms

    r = bench.results
    n = size["read_actions"]
    url = bench.pg_database("api_reads")
    db = Database(url)
    started = time.perf_counter()
    db.execute(FILL_ACTIONS, {"n": n})
    db.execute("VACUUM ANALYZE aol_actions")
    r.add(
        "9 API",
        f"fill {n:,} actions (INSERT ... SELECT generate_series, VACUUM ANALYZE)",
        f"{time.perf_counter() - started:.1f} s",
    )
    low, high = db.rows("SELECT min(id), max(id) FROM aol_actions")[0]
    env = django_env(f"{url}{CONN_MAX_AGE}", artifacts=bench.artifacts("api_reads"))
    secret = make_token(env)
    server = Server(env, log="api-reads-gunicorn")
    try:
        client = Client(server.port, secret)
        rng = random.Random(14)

        def timed(path_for, count: int) -> list[float]:
            for _ in range(WARM_UP):
                client.call("GET", path_for())
            times = []
            for _ in range(count):
                path = path_for()
                status, body, seconds = client.call("GET", path)
                if status != 200:
                    raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
                times.append(seconds)
            return times

        get = timed(lambda: f"/api/v1/actions/{rng.randint(low, high)}", size["reads"])
        listing = timed(
            lambda: f"/api/v1/actions?status=DLQ&type=POST_SOCIAL&after={rng.randint(low, high)}", size["reads"]
        )
        _, body, _ = client.call("GET", f"/api/v1/actions?status=DLQ&type=POST_SOCIAL&after={low}")
        page = len(json.loads(body)["actions"])
        client.close()
        for label, values, target in (
            (f"GET /api/v1/actions/{{id}} at {n:,} actions", get, TARGETS["get"]),
            (
                f"GET /api/v1/actions?status=DLQ&type=POST_SOCIAL&after=… at {n:,} actions ({page} per page)",
                listing,
                TARGETS["list"],
            ),
        ):
            r.add("9 API", f"{label} p50", fmt_ms(percentile(values, 50)))
            p95 = percentile(values, 95)
            r.add("9 API", f"{label} p95", fmt_ms(p95), f"<= {target * 1000:g} ms", p95 <= target)
    finally:
        server.stop()
        db.close()
        if not bench.args.keep:
            bench.drop(f"{bench_db_prefix()}_api_reads")


def scenario_api(bench: Bench) -> None:
    size = SIZES[bench.mode]
    print(
        f"\n== 9. API: gunicorn, {WORKERS} workers (deploy/gunicorn.conf.py), keep-alive clients; "
        f"reads at {size['read_actions']:,} actions ==",
        flush=True,
    )
    enqueue(bench, size)
    reads(bench, size)
    bench.results.note(
        f"API: gunicorn {WORKERS} workers x 4 threads (gthread) on 127.0.0.1, access log on, DEBUG off; the "
        "client is http.client on the same 2-core machine (its CPU counts against the server's). Enqueue "
        f"rates are actions / wall time of the whole run ({SINGLE_CLIENTS} client threads for single requests, "
        f"{BATCH_CLIENTS} for batches of {BATCH:,}); reads are timed one at a time from one connection after "
        f"{WARM_UP} warm-ups, ids and `after` drawn at random over the table. The write rate limit was off "
        "(AOL_API_WRITES_PER_MINUTE=0)."
    )


if __name__ == "__main__":
    sys.exit("run it through bench/run.py --only api")
