"""Schedules fired by real run_aol_daemon processes: once per period across daemons, takeover and downtime."""

import signal
import time
from datetime import datetime, timedelta

import pytest

from orchestration.models import Action, ExecutionLog, LogLevel, Schedule, TickLedger
from orchestration.services.schedules import schedule_clean
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def make_schedule(*, interval_seconds: int, catch_up: int) -> Schedule:
    schedule = Schedule(
        name="heartbeat post",
        action_type="POST_SOCIAL",
        payload_template={"platform": "mastodon", "message": "period {period}"},
        interval_seconds=interval_seconds,
        catch_up=catch_up,
    )
    schedule_clean(schedule=schedule)
    schedule.save()
    return schedule


def fired_periods(schedule: Schedule) -> list[datetime]:
    """The period of every action the schedule queued, in period order (duplicates kept)."""
    keys = Action.objects.filter(idempotency_key__startswith=f"schedule:{schedule.pk}:").values_list(
        "idempotency_key", flat=True
    )
    return sorted(datetime.fromisoformat(key.split(":", 2)[2]) for key in keys)


def assert_once_per_period_without_gaps(periods: list[datetime], step: timedelta) -> None:
    assert periods, "nothing fired"
    expected = [periods[0] + step * i for i in range(round((periods[-1] - periods[0]) / step) + 1)]
    assert periods == expected, f"fired {periods}, expected each of {expected} exactly once"


def queued_by(daemon) -> int:
    """How many schedule actions the daemon queued (from its ticks' notes)."""
    total = 0
    for notes in TickLedger.objects.filter(owner=daemon.owner()).values_list("notes", flat=True):
        if "schedules queued " in notes:
            total += int(notes.split("schedules queued ", 1)[1].split(" ", 1)[0])
    return total


def start_when_lease_free(start_daemon, *args, timeout: float = 30):
    """A standby: keep starting a daemon until one gets the lease (exit code 3 means it is held)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        daemon = start_daemon(*args)
        while daemon.proc.poll() is None and "[AOL Tick" not in daemon.output():
            time.sleep(0.05)
        if daemon.proc.poll() is None:
            return daemon
        assert daemon.proc.returncode == 3, daemon.output()
    raise AssertionError("no daemon got the lease")


def test_schedule_daemon__two_sequential_daemons_fire_each_period_once(start_daemon):
    schedule = make_schedule(interval_seconds=1, catch_up=10)
    first = start_daemon("--proof", "--ticks", "12")  # about 2.4 s of ticks
    assert first.wait(timeout=60) == 0, first.output()
    second = start_daemon("--proof", "--ticks", "12")
    assert second.wait(timeout=60) == 0, second.output()
    periods = fired_periods(schedule)
    assert_once_per_period_without_gaps(periods, timedelta(seconds=1))
    assert queued_by(first) >= 1 and queued_by(second) >= 1
    assert queued_by(first) + queued_by(second) == len(periods)


def test_schedule_daemon__a_standby_taking_over_mid_way_fires_no_period_twice(start_daemon):
    schedule = make_schedule(interval_seconds=2, catch_up=10)
    holder = start_daemon("--proof")
    wait_until(lambda: len(fired_periods(schedule)) >= 2, timeout=30, message="the holder fires two periods")
    # ...and has recorded the ticks that fired them (a period is queued before its tick is recorded).
    wait_until(lambda: queued_by(holder) >= 2, timeout=30, message="the holder records its firing ticks")
    holder.signal(signal.SIGKILL)  # dies without releasing the lease: the standby must wait for its expiry
    holder.wait()
    fired_by_holder = len(fired_periods(schedule))
    standby = start_when_lease_free(start_daemon, "--proof")
    wait_until(lambda: len(fired_periods(schedule)) >= fired_by_holder + 2, timeout=30, message="the standby fires on")
    standby.signal(signal.SIGTERM)
    assert standby.wait(timeout=15) == 0, standby.output()
    assert_once_per_period_without_gaps(fired_periods(schedule), timedelta(seconds=2))
    assert queued_by(holder) >= 2 and queued_by(standby) >= 1


def test_schedule_daemon__after_downtime_fires_only_the_catch_up_count(start_daemon):
    schedule = make_schedule(interval_seconds=1, catch_up=2)
    first = start_daemon("--proof", "--ticks", "8")
    assert first.wait(timeout=60) == 0, first.output()
    before = fired_periods(schedule)
    assert_once_per_period_without_gaps(before, timedelta(seconds=1))
    time.sleep(4)  # the daemon is down for about four periods
    second = start_daemon("--proof", "--ticks", "1")
    assert second.wait(timeout=60) == 0, second.output()
    after = fired_periods(schedule)[len(before) :]
    assert len(after) == 2, after  # the newest two missed periods, no more
    assert after[1] - after[0] == timedelta(seconds=1)
    assert after[0] - before[-1] > timedelta(seconds=2)  # older missed periods were passed over
    assert queued_by(second) == 2
    assert ExecutionLog.objects.filter(level=LogLevel.WARNING, message__contains="were passed over (catch-up 2)")
