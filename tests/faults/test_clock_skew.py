"""A host whose wall clock is wrong: schedules, tick times, bulk enqueues and the lease follow the database's clock.

libfaketime (Debian's ``faketime`` package) moves the wall clock of one process only, and is told to
leave its monotonic clock alone (which times the daemon's waits), as on a badly synced host.

PostgreSQL only: on SQLite the database's clock is the clock of the process that runs the statement,
so a skewed process skews it too; SQLite's processes must share one host and one clock.
"""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from orchestration.dbclock import db_now
from orchestration.models import Action, Lease, Schedule, TickLedger
from tests.commands.test_schedule_daemon import assert_once_per_period_without_gaps, fired_periods, make_schedule
from tests.conftest import FAST_DAEMON_ENV, ROOT, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

SKEW = timedelta(minutes=10)
PERIOD = timedelta(seconds=2)
TTL = float(FAST_DAEMON_ENV["AOL_LEASE_TTL_SECONDS"])
#: Slack for process start-up and scheduling on a small, busy machine.
MARGIN = timedelta(seconds=5)
METRICS_TOKEN = "metrics-token-for-the-clock-skew-test"
#: What the console's status page and JSON show as the age of the last tick.
STATUS_TICK_AGE = (
    "from orchestration.services.status import status_snapshot; "
    "print(status_snapshot(detail=True)['last_tick_age_seconds'])"
)


@pytest.fixture
def skewed(daemon_env):
    """``skewed("+10m")``: the environment of a process whose wall clock is that far off (checked)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))
    if not found:
        message = "libfaketime not found: install Debian's faketime package (apt-get install -y faketime)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    def environment(offset: str) -> dict[str, str]:
        env = {"LD_PRELOAD": str(found[-1]), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        seen = subprocess.run(
            [sys.executable, "-c", "import time; print(time.time())"],
            env={**daemon_env, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        skew = float(seen.stdout) - time.time()
        assert abs(abs(skew) - SKEW.total_seconds()) < 30, f"libfaketime did not skew the clock: {skew:+.0f} s"
        return env

    return environment


def assert_fired_on_the_database_clock(schedule: Schedule, *, first) -> list:
    """Every period from ``first`` on fired once, none ahead of the database, and the next one is due
    within a period on the database's timeline."""
    periods = fired_periods(schedule)
    now = db_now()
    assert periods[0] == first, f"the first period fired was {periods[0]}, not the schedule's first, {first}"
    assert_once_per_period_without_gaps(periods, PERIOD)
    assert periods[-1] <= now, f"period {periods[-1]} fired {periods[-1] - now} ahead of the database clock"
    schedule.refresh_from_db()
    assert schedule.next_run_at - now <= PERIOD, f"next_run_at is {schedule.next_run_at - now} ahead"
    return periods


def test_clock_skew__schedules_ticks_and_the_lease_follow_the_database_clock(
    start_daemon, skewed, daemon_env, client, settings
):
    schedule = make_schedule(interval_seconds=int(PERIOD.total_seconds()), catch_up=10)
    first = schedule.next_run_at

    # A daemon 10 minutes ahead fires each period when the database says it has come.
    ahead = start_daemon("--proof", env=skewed("+10m"))
    wait_until(lambda: len(fired_periods(schedule)) >= 3, timeout=30, message="the skewed daemon fires 3 periods")
    assert_fired_on_the_database_clock(schedule, first=first)
    now = db_now()
    for started, finished in TickLedger.objects.values_list("started_at", "finished_at"):
        assert started <= finished <= now, f"tick {started}..{finished} ends after the database's now, {now}"
    latest = TickLedger.objects.latest("id")
    assert now - MARGIN <= latest.started_at, f"the latest tick started at {latest.started_at}, now is {now}"

    # Its last tick's age is measured on the database clock: by /metrics, and by a console whose
    # host is 10 minutes ahead too.
    ahead.signal(signal.SIGTERM)
    assert ahead.wait(timeout=15) == 0, ahead.output()
    time.sleep(1.0)
    console = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", STATUS_TICK_AGE],
        cwd=ROOT,
        env={**daemon_env, **skewed("+10m")},
        check=True,
        capture_output=True,
        text=True,
    )
    age = float(console.stdout.strip().splitlines()[-1])
    assert 1.0 <= age < MARGIN.total_seconds(), age
    settings.AOL_METRICS_TOKEN = METRICS_TOKEN
    metrics = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}").content.decode()
    [metric_age] = [line for line in metrics.splitlines() if line.startswith("aol_last_tick_age_seconds ")]
    assert 1.0 <= float(metric_age.split()[1]) < MARGIN.total_seconds(), metric_age

    # A daemon with a correct clock carries on at the next period: nothing was pushed into the future.
    fired_before = len(fired_periods(schedule))
    on_time = start_daemon("--proof")
    wait_until(
        lambda: len(fired_periods(schedule)) > fired_before,
        timeout=(PERIOD + MARGIN).total_seconds(),
        message="the correct-clock daemon fires the next period",
    )
    assert_fired_on_the_database_clock(schedule, first=first)

    # A standby 10 minutes behind does not take the live lease; it takes over once it is released.
    on_time.wait_for_output("[AOL Tick")
    token = Lease.objects.get().token
    behind = start_daemon("--proof", "--standby", env=skewed("-10m"))
    behind.wait_for_output("[AOL] Standby: lease held by")
    time.sleep(2 * TTL)
    assert Lease.objects.get().token == token, behind.output()
    assert "Lease acquired" not in behind.output()
    on_time.signal(signal.SIGTERM)
    assert on_time.wait(timeout=15) == 0, on_time.output()
    behind.wait_for_output("Lease acquired")
    fired_before = len(fired_periods(schedule))
    wait_until(
        lambda: len(fired_periods(schedule)) >= fired_before + 2,
        timeout=(2 * PERIOD + MARGIN).total_seconds(),
        message="the standby behind fires on time",
    )
    assert_fired_on_the_database_clock(schedule, first=first)
    behind.signal(signal.SIGTERM)
    assert behind.wait(timeout=15) == 0, behind.output()


def test_clock_skew__a_bulk_enqueue_from_a_host_ahead_is_due_at_once_and_dated_by_the_database(
    daemon_env, skewed, tmp_path
):
    path = tmp_path / "actions.jsonl"
    item = {"action_type": "POST_SOCIAL", "payload": {"platform": "twitter", "message": "hi"}, "idempotency_key": "k"}
    path.write_text(json.dumps(item) + "\n", encoding="utf-8")
    before = db_now()
    subprocess.run(
        [sys.executable, "manage.py", "aol_enqueue", "--from-file", str(path)],
        cwd=ROOT,
        env={**daemon_env, **skewed("+10m")},
        check=True,
        capture_output=True,
    )
    after = db_now()
    action = Action.objects.get(idempotency_key="k")
    assert before <= action.created_at <= after
    assert before <= action.not_before <= after
    assert list(Action.objects.due()) == [action]
