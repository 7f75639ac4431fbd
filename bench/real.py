"""Scenario 10, REAL concurrency (``bench/run.py --only real``): WEBHOOK actions against a slow local receiver.

A signature-verifying receiver on 127.0.0.1 (tests/webhook_server.py, the one the tests use) answers
every request after 200 ms. For AOL_REAL_CONCURRENCY = 1, 4 and 8, a fresh PostgreSQL database gets
200 due WEBHOOK actions (40 in ``--quick``) spread over 16 accounts (the payload's ``account``), and one
daemon in REAL mode (``run_aol_daemon --max-actions 500 --interval 0.01 --max-tick-seconds 3600``)
sends them all. Figures, from the receiver's own log of when each request started and ended:

- throughput = requests / (end of the last − start of the first), target >= 0.8 × N / 0.2 s (a slot
  that is never idle sends 5 requests a second);
- the most requests in flight at once (at most N);
- pairs of one account's requests that overlapped (target 0: one account is never sent to twice at once).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from bench.lib import Database, django_env, manage, start, wait_for
from tests.webhook_server import SECRET, SECRET_ENV, WebhookTestServer, max_in_flight, overlaps

if TYPE_CHECKING:
    from bench.run import Bench

SIZES = {"full": 200, "quick": 40}
CONCURRENCY = (1, 4, 8)
ACCOUNTS = 16
DELAY_SECONDS = 0.2
TARGET_SHARE = 0.8  # of the ideal N / DELAY_SECONDS
SCENARIO = "10 REAL concurrency"
#: The drain's flags (run.py's ``drain_args``) without --proof: the daemon runs in REAL as the flag says.
DAEMON_ARGS = ["run_aol_daemon", "--max-actions", "500", "--interval", "0.01", "--max-tick-seconds", "3600"]


def scenario_real(bench: Bench) -> None:
    r = bench.results
    n = SIZES[bench.mode]
    print(
        f"\n== {SCENARIO}: {n} WEBHOOK actions over {ACCOUNTS} accounts, a receiver answering after "
        f"{DELAY_SECONDS * 1000:g} ms, AOL_REAL_CONCURRENCY {', '.join(map(str, CONCURRENCY))} ==",
        flush=True,
    )
    for concurrency in CONCURRENCY:
        server = send_all(bench, concurrency=concurrency, n=n)
        spans = list(server.timeline)
        seconds = max(span.end for span in spans) - min(span.start for span in spans)
        throughput = len(spans) / seconds
        target = TARGET_SHARE * concurrency / DELAY_SECONDS
        r.figures[f"real_{concurrency}"] = throughput
        r.add(
            SCENARIO,
            f"throughput at AOL_REAL_CONCURRENCY={concurrency} ({len(spans)} requests, {seconds:.1f} s)",
            f"{throughput:.1f}/s",
            f">= {target:g}/s",
            throughput >= target,
        )
        clashes = overlaps(spans)
        most = max_in_flight(spans)
        stored = len({event["id"] for event in server.events})
        r.add(
            SCENARIO,
            f"at {concurrency}: most in flight; one account's overlapping requests; events stored once",
            f"{most}; {len(clashes)}; {stored} of {n} (requests {len(server.requests)})",
            f"<= {concurrency}; 0; {n} of {n}",
            most <= concurrency and not clashes and stored == n == len(server.events),
        )


def send_all(bench: Bench, *, concurrency: int, n: int) -> WebhookTestServer:
    """Queue ``n`` actions on a fresh database and let one REAL daemon send them all; the stopped receiver."""
    from bench.run import VAR, stop

    server = WebhookTestServer().start()
    server.delay_seconds = DELAY_SECONDS
    try:
        url = bench.pg_database(f"real_{concurrency}")
        Database(url).execute("UPDATE aol_control_flags SET proof_mode = false")  # REAL
        env = django_env(
            url,
            artifacts=bench.artifacts(f"real_{concurrency}"),
            AOL_WEBHOOKS=json.dumps({"crm": server.endpoint()}),
            AOL_REAL_CONCURRENCY=str(concurrency),
            AOL_MAX_ACTIONS_PER_TICK="500",
            **{SECRET_ENV: SECRET},
        )
        path = VAR / f"real-{concurrency}.jsonl"
        with open(path, "w") as out:
            for i in range(n):
                payload = {"endpoint": "crm", "event": "bench.real", "account": f"tenant-{i % ACCOUNTS:02d}"}
                item = {"action_type": "WEBHOOK", "payload": payload, "idempotency_key": f"real-{i:05d}"}
                out.write(json.dumps(item) + "\n")
        manage(["aol_enqueue", "--from-file", str(path)], env, log=f"real-{concurrency}-enqueue")
        daemon = start(["manage.py", *DAEMON_ARGS], env, log=f"real-{concurrency}-daemon")
        try:
            wait_for(
                lambda: len(server.events) >= n,
                timeout=n * DELAY_SECONDS * 2 + 120,
                interval=0.1,
                what=f"{n} events sent",
            )
            time.sleep(0.5)  # a request sent twice would arrive now
        finally:
            stop(daemon)
    finally:
        server.stop()
    return server
