"""run_aol_daemon as a real process: ticks, lease exclusivity, kill flag, signals, SIGKILL recovery."""

import hashlib
import signal
import socket

import pytest
from django.utils import timezone

from orchestration.adapters.artifacts import artifact_path
from orchestration.models import Action, ActionStatus, ExecutionLog, Lease, TickLedger
from orchestration.services.control import control_kill
from tests.conftest import wait_until
from tests.factories import post_social

pytestmark = pytest.mark.django_db(transaction=True)


def test_run_aol_daemon__two_proof_ticks_print_success_and_exit_0(start_daemon):
    daemon = start_daemon("--proof", "--ticks", "2")
    assert daemon.wait() == 0, daemon.output()
    out = daemon.output()
    assert "[AOL] Database initialized:" in out
    assert "[AOL] PROOF mode: True" in out
    assert "[AOL] Max ticks: 2" in out
    assert "[AOL Tick 0] SUCCESS | Actions: 0 attempted, 0 succeeded" in out
    assert "[AOL Tick 1] SUCCESS | Actions: 0 attempted, 0 succeeded" in out
    assert TickLedger.objects.count() == 2
    assert Lease.objects.get().owner == ""  # released on exit


def test_run_aol_daemon__enqueued_post_social_succeeds_in_one_tick_with_matching_sha256(start_daemon):
    action = post_social("runbook-1", message="test")
    daemon = start_daemon("--ticks", "1")
    assert daemon.wait() == 0, daemon.output()
    assert "[AOL Tick 0] SUCCESS | Actions: 1 attempted, 1 succeeded" in daemon.output()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS
    log = ExecutionLog.objects.get(action_id=action.pk)
    assert hashlib.sha256(artifact_path(log.artifact_ref).read_bytes()).hexdigest() == log.artifact_sha256


def test_run_aol_daemon__second_daemon_exits_3_naming_the_holder_and_the_first_carries_on(start_daemon):
    first = start_daemon()
    first.wait_for_output("[AOL Tick 1]")
    holder = Lease.objects.get().owner
    assert holder == first.owner() and holder.startswith(f"{socket.gethostname()}:{first.pid}:")
    second = start_daemon("--ticks", "1")
    assert second.wait() == 3
    assert f"Lease held by {holder} until" in second.output()
    ticks_before = TickLedger.objects.count()
    wait_until(lambda: TickLedger.objects.count() > ticks_before + 2, message="first daemon keeps ticking")
    assert first.proc.poll() is None
    assert set(TickLedger.objects.values_list("owner", flat=True)) == {holder}


def test_run_aol_daemon__kill_flag_stops_a_running_daemon_and_frees_the_lease(start_daemon):
    daemon = start_daemon()
    daemon.wait_for_output("[AOL Tick 0]")
    control_kill(actor="ops", reason="test")
    assert daemon.wait(timeout=10) == 0
    assert "KILLED" in daemon.output()
    assert Lease.objects.get().owner == ""
    assert TickLedger.objects.order_by("id").last().status == "KILLED"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_aol_daemon__signal_stops_gracefully_with_exit_0_and_releases_the_lease(start_daemon, signum):
    daemon = start_daemon()
    daemon.wait_for_output("[AOL Tick 0]")
    daemon.signal(signum)
    assert daemon.wait(timeout=10) == 0
    assert f"Stopping: received {signal.Signals(signum).name}" in daemon.output()
    assert Lease.objects.get().owner == ""


def test_run_aol_daemon__after_sigkill_the_next_holder_leaves_nothing_running(start_daemon):
    """What a SIGKILLed holder had claimed is recovered by the next holder's first tick."""
    first = start_daemon()
    first.wait_for_output("[AOL Tick 0]")
    token = Lease.objects.get().token
    # An action claimed by the first daemon when it dies (as the claim would have left it).
    action = post_social("in-flight")
    Action.objects.filter(pk=action.pk).update(
        status=ActionStatus.RUNNING, attempts=1, lease_token=token, claimed_by=Lease.objects.get().owner
    )
    first.signal(signal.SIGKILL)
    first.wait()
    wait_until(lambda: Lease.objects.filter(expires_at__lt=timezone.now()).exists(), message="lease expiry")
    second = start_daemon("--ticks", "1")
    assert second.wait() == 0, second.output()
    assert not Action.objects.filter(status=ActionStatus.RUNNING).exists()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.SUCCESS, 2)
    assert "worker lost during attempt" in ExecutionLog.objects.filter(action_id=action.pk).first().message
