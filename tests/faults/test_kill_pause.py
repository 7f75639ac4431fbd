"""Kill and pause take effect within a second, even in the middle of a tick (real daemon processes)."""

import signal
import time

import pytest

from orchestration.models import Action, ActionStatus, ExecutionLog, Lease, TickLedger, TickStatus
from orchestration.services.control import control_kill, control_pause, control_resume, control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until
from tests.faults.conftest import artifact_files, assert_nothing_running, success_logs, wait_for_exit

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

#: The default poll of the control flags: the promises below hold with it, not only with test timings.
DEFAULT_POLL = {"AOL_CONTROL_POLL_SECONDS": "0.5"}


def enqueue(action_type: str, payload: dict, key: str) -> Action:
    return action_enqueue(action_type=action_type, payload=payload, idempotency_key=key)[0]


def test_kill__flag_set_mid_action__process_exits_within_1s_of_the_action_finishing_and_releases_the_lease(
    start_daemon, artifacts_dir
):
    """Invariant: with the kill flag set while an action that cannot be interrupted runs, that action is
    allowed to finish and is recorded once, no further action starts, and the process exits (code 0,
    lease released, a KILLED tick recorded) within 1 s of the action finishing."""
    slow = enqueue("HANG", {"seconds": 1.5}, "kill-mid-action")
    queued = [enqueue("SLEEP", {"seconds": 0}, f"kill-queued-{i}") for i in range(2)]
    daemon = start_daemon("--proof", env=DEFAULT_POLL)
    wait_until(lambda: Action.objects.filter(pk=slow.pk, status=ActionStatus.RUNNING).exists())
    time.sleep(0.3)
    control_kill(actor="test", reason="kill drill")

    code, exited_at = wait_for_exit(daemon, timeout=15)
    assert code == 0, daemon.output()
    slow.refresh_from_db()
    assert slow.status == ActionStatus.SUCCESS
    [success] = success_logs(slow)
    assert exited_at - success.ts.timestamp() < 1.0, f"exited {exited_at - success.ts.timestamp():.2f}s after"
    assert len(artifact_files(artifacts_dir, "hang")) == 1
    for action in queued:
        action.refresh_from_db()
        assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)
    assert Lease.objects.get().owner == ""
    assert TickLedger.objects.order_by("-id").first().status == TickStatus.KILLED
    assert_nothing_running()


@pytest.mark.parametrize(
    ("mode", "in_flight"),
    [
        ("--proof", 1),
        pytest.param("REAL", 4, id="REAL-concurrency-4"),
    ],
)
def test_kill__flag_set_mid_sleep__cooperative_action_stops_holder_and_standby_exit_within_1s(
    start_daemon, artifacts_dir, mode, in_flight
):
    """Invariant: an action that checks its Attempt (SLEEP) stops at the kill at once: the holder and a
    standby exit within 1 s of the flag being set, the lease is released, and the interrupted action is
    back in the queue with its attempt not counted and no artifact written. In REAL mode with
    AOL_REAL_CONCURRENCY=4 the same holds for all 4 attempts in flight."""
    actions = [enqueue("SLEEP", {"seconds": 30}, f"kill-mid-sleep-{i}") for i in range(in_flight)]
    args: tuple[str, ...] = ("--proof",) if mode == "--proof" else ()
    env = {**DEFAULT_POLL, "AOL_REAL_CONCURRENCY": str(in_flight), "AOL_MAX_ACTIONS_PER_TICK": str(in_flight)}
    if mode == "REAL":
        control_set_proof_mode(enabled=False, actor="test", reason="kill drill in REAL")
    holder = start_daemon(*args, env=env)
    holder.wait_for_output("Lease acquired")
    standby = start_daemon(*args, "--standby", env=env)
    standby.wait_for_output("Standby: lease held by")
    wait_until(lambda: Action.objects.filter(status=ActionStatus.RUNNING).count() == in_flight)

    control_kill(actor="test", reason="kill drill")
    killed_at = time.time()
    for daemon in (holder, standby):
        code, exited_at = wait_for_exit(daemon, timeout=10)
        assert code == 0, daemon.output()
        assert exited_at - killed_at < 1.0, f"exited {exited_at - killed_at:.2f}s after the kill"

    for action in actions:
        action.refresh_from_db()
        assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)
        assert ExecutionLog.objects.filter(action_id=action.pk, message__contains="interrupted (").count() == 1
    assert artifact_files(artifacts_dir, "sleep") == []
    assert Lease.objects.get().owner == ""
    assert_nothing_running()


def test_pause__set_mid_tick__no_new_claim_after_1s_and_the_queue_resumes_afterwards(start_daemon):
    """Invariant: pausing while a tick works through a batch of actions stops new claims within 1 s
    (the running action finishes; the rest of the batch is never claimed: attempts 0) and PAUSED ticks
    follow; after resume every action succeeds exactly once."""
    actions = [enqueue("SLEEP", {"seconds": 0.4}, f"pause-{i}") for i in range(8)]
    daemon = start_daemon("--proof", "--max-actions", "8", env=DEFAULT_POLL)
    wait_until(lambda: Action.objects.filter(status=ActionStatus.RUNNING).exists())
    control_pause(actor="test", reason="pause drill")
    time.sleep(3.0)  # long enough for the whole batch (8 x 0.4 s) had the pause been ignored

    claimed = Action.objects.exclude(status=ActionStatus.PENDING).count()
    # Within 1 s at most the running action and two more 0.4 s sleeps can have started.
    assert claimed <= 3, f"{claimed} actions claimed after the pause"
    assert Action.objects.filter(status=ActionStatus.PENDING, attempts=0).count() == 8 - claimed
    assert TickLedger.objects.filter(status=TickStatus.PAUSED).exists()
    assert_nothing_running()

    control_resume(actor="test", reason="pause drill over")
    wait_until(lambda: Action.objects.filter(status=ActionStatus.SUCCESS).count() == 8, message="all done")
    for action in actions:
        assert len(success_logs(action)) == 1
    assert daemon.proc.poll() is None


def test_sigterm__mid_sleep__stops_within_1s_releases_lease_action_back_in_queue(start_daemon):
    """Invariant: SIGTERM asks the running attempt to stop; a cooperative one stops at once, the daemon
    exits 0 within 1 s, releases the lease, and the action is back in the queue, attempt not counted."""
    action = enqueue("SLEEP", {"seconds": 30}, "sigterm-mid-sleep")
    daemon = start_daemon("--proof")
    wait_until(lambda: Action.objects.filter(pk=action.pk, status=ActionStatus.RUNNING).exists())
    daemon.signal(signal.SIGTERM)
    signalled_at = time.time()
    code, exited_at = wait_for_exit(daemon, timeout=10)
    assert code == 0, daemon.output()
    assert exited_at - signalled_at < 1.0
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)
    assert Lease.objects.get().owner == ""
    assert "Stopping: received SIGTERM" in daemon.output()
