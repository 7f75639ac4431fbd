"""Benchmark: aol_prune's batches on ~1M terminal rows in PostgreSQL (not part of the test suite).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aol_bench python bench/prune_1m.py --yes

WIPES the AOL tables of that database (asks for --yes), fills aol_actions with --rows old SUCCESS/FAILED
actions plus open ones that must survive, a tenth as many old execution logs and ticks, and runs the
retention service as aol_prune does. Meanwhile a probe thread does what a daemon tick does every 50 ms
(a SKIP LOCKED claim query and a log insert, in one transaction) and records how long it waited.
Prints the longest single batch, the total time and the probe's worst latency.
"""

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicmo_site.settings")

OPEN_ROWS = {"DLQ": 5_000, "PENDING": 2_000, "RETRY": 1_000}


def fill(rows: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE aol_actions, aol_execution_logs, aol_tick_ledger RESTART IDENTITY")
        cursor.execute(
            """
            INSERT INTO aol_actions (idempotency_key, action_type, payload, status, attempts, not_before,
                                     last_error, claimed_by, lease_token, created_at, updated_at)
            SELECT 'bench-' || g, 'POST_SOCIAL', '{"platform": "twitter", "message": "bench"}'::jsonb,
                   CASE WHEN g %% 10 = 0 THEN 'FAILED' ELSE 'SUCCESS' END, 1, now() - interval '90 days',
                   '', 'bench:1', 1, now() - interval '90 days' + g * interval '1 ms',
                   now() - interval '90 days' + g * interval '1 ms'
            FROM generate_series(1, %s) AS g
            """,
            [rows],
        )
        for status, count in OPEN_ROWS.items():
            cursor.execute(
                """
                INSERT INTO aol_actions (idempotency_key, action_type, payload, status, attempts, not_before,
                                         last_error, claimed_by, lease_token, created_at, updated_at)
                SELECT 'bench-open-' || %s || '-' || g, 'POST_SOCIAL', '{}'::jsonb, %s, 1,
                       now() + interval '1 day', '', '', NULL, now() - interval '90 days',
                       now() - interval '90 days'
                FROM generate_series(1, %s) AS g
                """,
                [status, status, count],
            )
        cursor.execute(
            """
            INSERT INTO aol_execution_logs (action_id, ts, level, message, actor, artifact_ref, artifact_sha256)
            SELECT g * 10, now() - interval '90 days' + g * interval '1 ms', 'INFO', 'bench log', 'bench:1', '', ''
            FROM generate_series(1, %s) AS g
            """,
            [rows // 10],
        )
        cursor.execute(
            """
            INSERT INTO aol_tick_ledger (started_at, finished_at, status, actions_attempted, actions_succeeded,
                                         owner, lease_token, notes, queue_depth)
            SELECT now() - interval '90 days' + g * interval '5 s', now() - interval '90 days' + g * interval '5 s',
                   'SUCCESS', 0, 0, 'bench:1', 1, '', '{}'::jsonb
            FROM generate_series(1, %s) AS g
            """,
            [rows // 10],
        )
        cursor.execute("ANALYZE aol_actions, aol_execution_logs, aol_tick_ledger")


class TickProbe(threading.Thread):
    """A daemon-like writer: claim query with SKIP LOCKED and a log insert, every 50 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        from django.db import connection, transaction

        from orchestration.models import DUE_STATUSES, Action
        from orchestration.services.logs import log_write

        try:
            while not self.halt.wait(0.05):
                started = time.monotonic()
                with transaction.atomic():
                    list(Action.objects.filter(status__in=DUE_STATUSES).select_for_update(skip_locked=True)[:3])
                    log_write(message="probe", actor="bench-probe")
                self.latencies.append(time.monotonic() - started)
        finally:
            connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default AOL_PRUNE_BATCH_SIZE (1000)")
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--yes", action="store_true", help="Yes, wipe the AOL tables of DATABASE_URL's database.")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from orchestration.dburl import database_url_masked
    from orchestration.models import Action, ActionStatus
    from orchestration.services.retention import PRUNABLE_STATUSES, retention_prune

    if connection.vendor != "postgresql":
        print("This benchmark needs PostgreSQL: set DATABASE_URL=postgres://…", file=sys.stderr)
        return 2
    if not args.yes:
        print(f"This wipes the AOL tables of {database_url_masked()}; pass --yes to go on.", file=sys.stderr)
        return 2
    call_command("migrate", verbosity=0)
    started = time.monotonic()
    fill(args.rows)
    print(
        f"Filled {database_url_masked()} with {args.rows:,} terminal actions, {sum(OPEN_ROWS.values()):,} open "
        f"ones, {args.rows // 10:,} logs and {args.rows // 10:,} ticks in {time.monotonic() - started:.1f}s."
    )

    probe = TickProbe()
    probe.start()
    report = retention_prune(
        batch_size=args.batch_size, max_seconds=args.max_seconds, artifacts_days=30, actions_days=30
    )
    probe.halt.set()
    probe.join()

    left_open = Action.objects.exclude(status__in=PRUNABLE_STATUSES).count()
    left_terminal = Action.objects.filter(status__in=PRUNABLE_STATUSES).count()
    print(report.summary())
    print(
        f"batches: {report.batches}, longest single batch: {report.longest_batch_seconds * 1000:.1f} ms, "
        f"total: {report.seconds:.1f}s ({(report.actions + report.logs + report.ticks) / report.seconds:,.0f} rows/s), "
        f"complete: {report.complete}"
    )
    if probe.latencies:
        ordered = sorted(probe.latencies)
        median = ordered[len(ordered) // 2] * 1000
        print(
            f"tick probe during the prune: {len(ordered)} transactions, median {median:.1f} ms, "
            f"worst {ordered[-1] * 1000:.1f} ms"
        )
    print(
        f"open actions left untouched: {left_open:,} of {sum(OPEN_ROWS.values()):,}; terminal actions left: "
        f"{left_terminal:,}"
    )
    assert left_open == sum(OPEN_ROWS.values()), "pruning touched an open action"
    assert ActionStatus.DLQ not in PRUNABLE_STATUSES
    return 0


if __name__ == "__main__":
    sys.exit(main())
