"""Wake-up on enqueue: on PostgreSQL an idle daemon claims new work at once (LISTEN/NOTIFY), not at
its next tick; a busy daemon keeps its tick pace; SQLite polls at the interval."""

import time

import pytest
from django.db import connection

from orchestration.daemon import Daemon, DaemonConfig
from orchestration.daemon.wakeup import WakeupListener
from orchestration.models import Action, ActionStatus
from orchestration.services.enqueue import action_enqueue, action_enqueue_many
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

#: Far longer than any wait below: a daemon that finishes work early was woken, not ticking.
LONG_INTERVAL = "60"


def post(key: str) -> Action:
    return action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "hi"}, idempotency_key=key)[0]


@pytest.mark.postgres_only
def test_wakeup__idle_daemon_runs_an_enqueued_action_long_before_its_next_tick(start_daemon):
    daemon = start_daemon("--proof", "--interval", LONG_INTERVAL)
    daemon.wait_for_output("[AOL Tick 0]")  # the first tick found nothing; the next is a minute away

    action = post("woken")

    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, timeout=20, message="woken")
    # The tick's line comes after its ledger row, which comes after the success: wait for it, do not race it.
    daemon.wait_for_output("[AOL Tick 1]")


@pytest.mark.postgres_only
def test_wakeup__bulk_enqueue_and_raw_inserts_wake_the_daemon_too(start_daemon):
    """The trigger is on the table, so every writer wakes the daemon, not only action_enqueue."""
    daemon = start_daemon("--proof", "--interval", LONG_INTERVAL)
    daemon.wait_for_output("[AOL Tick 0]")

    report = action_enqueue_many(
        items=[{"action_type": "POST_SOCIAL", "payload": {"platform": "x", "message": f"m{i}"}} for i in range(3)]
    )

    wait_until(
        lambda: Action.objects.filter(pk__in=report.created, status=ActionStatus.SUCCESS).count() == 3,
        timeout=20,
        message="all three done",
    )


@pytest.mark.postgres_only
def test_wakeup_listener__reports_notifications_from_other_connections():
    woken = []
    listener = WakeupListener(lambda: woken.append(True))
    listener.start()
    try:
        assert listener.listening.wait(10)
        post("notify-me")
        wait_until(lambda: woken, timeout=10, message="a notification")
    finally:
        listener.stop()
    assert not listener.is_alive()


def test_sleep__a_notification_ends_an_idle_wait_but_not_a_busy_one():
    """After a tick that used its whole AOL_MAX_ACTIONS_PER_TICK the interval holds even if work arrives:
    the per-tick limit keeps its meaning as a pace. An idle daemon is woken at once."""
    daemon = Daemon(DaemonConfig.from_settings(owner="t:1", interval_seconds=1.0, wake_on_enqueue=False))
    daemon._on_notify()
    started = time.monotonic()
    daemon._sleep(busy=False)
    assert time.monotonic() - started < 0.5

    daemon._on_notify()
    started = time.monotonic()
    daemon._sleep(busy=True)
    assert time.monotonic() - started >= 0.9


@pytest.mark.sqlite_only
def test_wakeup__sqlite_has_no_listener(start_daemon):
    """SQLite has no notifications: the daemon polls at its interval and opens no extra connection."""
    daemon = Daemon(DaemonConfig.from_settings(owner="t:1", max_ticks=1))
    assert daemon.run() == 0
    assert daemon._listener is None
    assert connection.vendor == "sqlite"
