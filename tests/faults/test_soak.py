"""Soak: a long drain with the limits raised; memory stays flat and every action is accounted for."""

import os
import time

import psutil
import pytest
from django.db.models import Count

from orchestration.models import Action, ActionStatus, ExecutionLog
from tests.conftest import wait_until
from tests.faults.conftest import artifact_files

# Once, on PostgreSQL (production): the drain's SQLite behaviour is covered by the other fault tests and
# tests/faults/test_sqlite_contention.py; 20,000 actions take about a minute per database.
pytestmark = [pytest.mark.faults, pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

#: 20,000 as the issue asks (about a minute per database since claims are batched);
#: AICMO_SOAK_ACTIONS changes it for a longer or a quicker run.
SOAK_ACTIONS = int(os.environ.get("AICMO_SOAK_ACTIONS", "20000"))
#: Every 50th action fails permanently and every 50th (offset) transiently until the DLQ, so every
#: path is soaked.
RAISED_LIMITS = {
    "AOL_MAX_ACTIONS_PER_TICK": "500",
    "AOL_MAX_TICK_SECONDS": "60",
    "AOL_TICK_INTERVAL_SECONDS": "0.01",
    "AOL_RETRY_BACKOFF_SECONDS": "0.01",
    "AOL_MAX_ATTEMPTS": "2",
}
MB = 1024 * 1024


def test_soak__thousands_of_actions_drained__rss_grows_under_20mb_and_counts_per_status_add_up(
    start_daemon, artifacts_dir
):
    """Invariant: draining SOAK_ACTIONS actions (20,000 in the full soak: successes, permanent failures,
    transient failures retried to the DLQ) in one daemon process grows its resident memory by less than
    20 MB after warm-up, and every action is accounted for: SUCCESS + DLQ == SOAK_ACTIONS, one artifact
    and one success log per SUCCESS."""
    payloads = [
        {"seconds": 0, "fail": "permanent"}
        if i % 50 == 0
        else {"seconds": 0, "fail": "transient"}
        if i % 50 == 25
        else {"seconds": 0}
        for i in range(SOAK_ACTIONS)
    ]
    Action.objects.bulk_create(
        [Action(idempotency_key=f"soak-{i}", action_type="SLEEP", payload=p) for i, p in enumerate(payloads)],
        batch_size=2000,
    )
    expected_dead = sum(1 for p in payloads if "fail" in p)
    daemon = start_daemon("--proof", env=RAISED_LIMITS)
    process = psutil.Process(daemon.pid)

    def done() -> int:
        return Action.objects.filter(status__in=[ActionStatus.SUCCESS, ActionStatus.DLQ]).count()

    wait_until(lambda: done() >= SOAK_ACTIONS // 10, timeout=120, interval=0.5, message="warm-up")
    rss_start = process.memory_info().rss
    peak = rss_start
    deadline = time.monotonic() + 600
    while done() < SOAK_ACTIONS and time.monotonic() < deadline:
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.5)
    rss_end = process.memory_info().rss
    assert done() == SOAK_ACTIONS, f"only {done()} of {SOAK_ACTIONS} finished"
    assert daemon.proc.poll() is None

    growth = max(peak, rss_end) - rss_start
    assert growth < 20 * MB, f"RSS grew by {growth / MB:.1f} MB ({rss_start / MB:.0f} -> {peak / MB:.0f} MB peak)"
    counts = dict(Action.objects.order_by().values_list("status").annotate(n=Count("id")))
    assert counts == {ActionStatus.SUCCESS: SOAK_ACTIONS - expected_dead, ActionStatus.DLQ: expected_dead}
    assert len(artifact_files(artifacts_dir, "sleep")) == SOAK_ACTIONS - expected_dead
    successes = ExecutionLog.objects.filter(level="INFO", action_id__isnull=False)
    assert successes.count() == successes.values("action_id").distinct().count() == SOAK_ACTIONS - expected_dead
