"""The tick budget holds against adapters that hang (real daemon processes)."""

import pytest

from orchestration.models import Action, ActionStatus, Lease, TickLedger
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until
from tests.faults.conftest import assert_nothing_running, success_logs, wait_for_exit

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

BUDGET = 1.0
#: What recording the abandoned attempt and the tick may add to the budget on a busy machine.
MARGIN = 0.75
HANGING = {"AOL_MAX_TICK_SECONDS": str(BUDGET), "AOL_MAX_ATTEMPTS": "5"}


def test_tick_budget__hanging_adapter__tick_ends_within_budget_attempt_failed_transient_next_tick_runs(start_daemon):
    """Invariant: an adapter that hangs (deaf to stop requests) cannot hold a tick past AOL_MAX_TICK_SECONDS
    plus a small margin: its attempt is recorded as a transient failure "exceeded its deadline", the
    daemon keeps its process and the next tick runs the next action."""
    hang = action_enqueue(action_type="HANG", payload={"seconds": 30}, idempotency_key="hang")[0]
    after = action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key="after-hang")[0]
    daemon = start_daemon("--proof", env=HANGING)
    wait_until(lambda: TickLedger.objects.filter(actions_succeeded=1).exists(), message="a later tick ran SLEEP")

    hang.refresh_from_db()
    assert hang.status in (ActionStatus.RETRY, ActionStatus.RUNNING)  # RUNNING again: its retry began
    first_failure = TickLedger.objects.filter(actions_attempted__gte=1).order_by("id").first()
    assert first_failure.actions_succeeded == 0
    assert first_failure.duration_seconds <= BUDGET + MARGIN, first_failure.duration_seconds
    assert "exceeded its deadline" in Action.objects.get(pk=hang.pk).last_error
    later = TickLedger.objects.filter(id__gt=first_failure.id, actions_succeeded=1)
    assert later.exists()  # the next tick ran, and ran SLEEP
    assert all(t.duration_seconds <= BUDGET + MARGIN for t in TickLedger.objects.all())
    assert daemon.proc.poll() is None
    assert len(success_logs(after)) == 1


def test_tick_budget__abandoned_threads_pile_up__daemon_exits_5_releasing_lease_nothing_left_running(start_daemon):
    """Invariant: once AOL_MAX_ABANDONED_THREADS overrunning adapter threads are still alive, the daemon
    records the tick, releases the lease and exits with code 5 for its supervisor to restart it; the
    abandoned attempts are recorded (RETRY), not left RUNNING, and their late results never land."""
    hang = action_enqueue(action_type="HANG", payload={"seconds": 4}, idempotency_key="hang-pile")[0]
    daemon = start_daemon("--proof", env={**HANGING, "AOL_MAX_ABANDONED_THREADS": "2"})
    code, _ = wait_for_exit(daemon, timeout=20)
    assert code == 5, daemon.output()
    assert "Exiting so that a supervisor restarts a clean process" in daemon.output()
    hang.refresh_from_db()
    assert (hang.status, hang.attempts) == (ActionStatus.RETRY, 2)
    assert Lease.objects.get().owner == ""
    assert success_logs(hang) == []
    assert_nothing_running()


def test_tick_budget__overrun_of_non_idempotent_real_attempt__parked_as_needs_review_not_retried(start_daemon):
    """Invariant: a REAL attempt of an adapter that is not idempotent which overruns its deadline has an
    unknown outcome: it is parked as NEEDS_REVIEW (not retried); the daemon goes on."""
    control_set_proof_mode(enabled=False, actor="test", reason="fault drill")
    hang = action_enqueue(action_type="HANG_REAL", payload={"seconds": 30}, idempotency_key="hang-real")[0]
    daemon = start_daemon(env=HANGING)
    wait_until(lambda: Action.objects.get(pk=hang.pk).status == ActionStatus.NEEDS_REVIEW, message="parked")
    hang.refresh_from_db()
    assert hang.attempts == 1
    assert "exceeded its deadline" in hang.last_error
    assert daemon.proc.poll() is None
