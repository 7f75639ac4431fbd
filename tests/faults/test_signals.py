"""Signals to a running daemon: SIGHUP stops it like SIGTERM, an adapter deaf to stop requests is let
finish, and a second signal exits at once but still hands the lease over (real daemon processes)."""

import signal
import time

import pytest

from orchestration.models import Action, ActionStatus, ExecutionLog, Lease
from orchestration.services.enqueue import action_enqueue
from tests.conftest import FAST_DAEMON_ENV, wait_until
from tests.faults.conftest import wait_for_exit

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

INTERVAL = float(FAST_DAEMON_ENV["AOL_TICK_INTERVAL_SECONDS"])
#: Slack for process scheduling on a small, busy machine.
MARGIN = 1.0
#: A lease TTL far longer than an interval: a takeover within an interval cannot be an expiry.
LONG_TTL = {"AOL_LEASE_TTL_SECONDS": "20", "AOL_MAX_TICK_SECONDS": "60"}


def enqueue(action_type: str, payload: dict, key: str) -> Action:
    return action_enqueue(action_type=action_type, payload=payload, idempotency_key=key)[0]


def wait_running(action: Action) -> None:
    wait_until(
        lambda: Action.objects.filter(pk=action.pk, status=ActionStatus.RUNNING).exists(),
        message=f"action #{action.pk} RUNNING",
    )


def test_sighup__mid_sleep__stops_like_sigterm_exit_0_action_back_uncounted_lease_released(start_daemon):
    """Invariant: SIGHUP (a terminal hang-up) is a graceful stop: the cooperative attempt stops at once and
    goes back to the queue uncounted, the lease is released, the exit code is 0."""
    action = enqueue("SLEEP", {"seconds": 30}, "sighup-mid-sleep")
    daemon = start_daemon("--proof")
    wait_running(action)
    daemon.signal(signal.SIGHUP)
    signalled_at = time.time()
    code, exited_at = wait_for_exit(daemon, timeout=10)
    assert code == 0, daemon.output()
    assert exited_at - signalled_at < 1.0 + MARGIN
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)
    assert Lease.objects.get().owner == ""
    assert "Stopping: received SIGHUP" in daemon.output()


def test_sigterm__while_an_adapter_deaf_to_stop_requests_runs__it_finishes_then_exit_0_and_lease_released(
    start_daemon,
):
    """Invariant: the first signal asks the running attempt to stop; an adapter that never checks its
    Attempt (HANG) is let finish and recorded as usual, then the daemon releases the lease and exits 0."""
    action = enqueue("HANG", {"seconds": 2}, "sigterm-deaf-adapter")
    daemon = start_daemon("--proof")
    wait_running(action)
    daemon.signal(signal.SIGTERM)
    signalled_at = time.time()
    daemon.wait_for_output("Received SIGTERM: stopping once the running action")
    code, exited_at = wait_for_exit(daemon, timeout=15)
    assert code == 0, daemon.output()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.SUCCESS, 1)
    assert action.updated_at.timestamp() > signalled_at  # it ran on after the signal
    assert Lease.objects.get().owner == ""
    assert "Stopping: received SIGTERM" in daemon.output()
    assert exited_at - signalled_at < 2 + MARGIN


@pytest.mark.parametrize(
    ("first", "second"),
    [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGHUP)],
    ids=["SIGTERM-twice", "SIGINT-then-SIGHUP"],
)
def test_second_signal__exits_at_once_with_128_plus_signal__lease_released_standby_takes_over_within_an_interval(
    start_daemon, first, second
):
    """Invariant: a second signal while the first waits for a deaf adapter exits at once with 128 + its
    number, after releasing the lease: a standby takes over within an interval, not a TTL, and recovers
    the interrupted action (attempt counted, as after any crash)."""
    action = enqueue("HANG", {"seconds": 60}, f"second-signal-{first.name}-{second.name}")
    holder = start_daemon("--proof", env=LONG_TTL)
    wait_running(action)
    standby = start_daemon("--proof", "--standby", env=LONG_TTL)
    standby.wait_for_output("Standby: lease held by")
    token = Lease.objects.get().token

    holder.signal(first)
    holder.wait_for_output(f"Received {first.name}: stopping once the running action")
    holder.signal(second)
    signalled_at = time.time()
    code, exited_at = wait_for_exit(holder, timeout=10)
    assert code == 128 + second, holder.output()
    assert exited_at - signalled_at < 1.0 + MARGIN
    assert f"Received {second.name}, a second stop signal: exiting at once; lease released." in holder.output()

    standby_owner = standby.owner()
    wait_until(lambda: Lease.objects.get().owner == standby_owner, timeout=20, interval=0.05, message="takeover")
    lease = Lease.objects.get()
    assert lease.token == token + 1
    assert lease.acquired_at.timestamp() - exited_at < INTERVAL + MARGIN  # released, not expired
    standby.wait_for_output("Recovered 1 action(s) left RUNNING by an earlier holder: 1 to RETRY")
    assert ExecutionLog.objects.filter(action_id=action.pk, message__contains="worker lost during attempt").exists()
