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


def test_run_aol_daemon__wait_when_killed__started_while_killed_waits_and_a_revive_resumes_work(start_daemon):
    """How `make run` starts it: a kill must not end the process (honcho would end the console with it)."""
    from orchestration.services.control import control_revive

    control_kill(actor="test", reason="killed before the start")
    daemon = start_daemon("--proof", "--wait-when-killed")
    daemon.wait_for_output("waits for a revive")
    tick = wait_until(lambda: TickLedger.objects.filter(status="KILLED").first())
    assert "waiting for a revive (lease kept, nothing runs)" in tick.notes
    assert daemon.proc.poll() is None, daemon.output()
    assert Lease.objects.get().owner == daemon.owner()  # the console sees who waits

    action = post_social("after-revive", message="back to work")
    assert Action.objects.get(pk=action.pk).status == ActionStatus.PENDING
    control_revive(actor="test", reason="drill over")
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS)
    assert "[AOL] Revived: resuming work." in daemon.output()
    assert daemon.proc.poll() is None


def test_run_aol_daemon__wait_when_killed__a_kill_mid_action_stops_it_and_the_process_stays(start_daemon):
    from orchestration.services.control import control_revive
    from orchestration.services.enqueue import action_enqueue

    slow = action_enqueue(action_type="SLEEP", payload={"seconds": 30}, idempotency_key="slow")[0]
    daemon = start_daemon("--proof", "--wait-when-killed")
    wait_until(lambda: Action.objects.filter(pk=slow.pk, status=ActionStatus.RUNNING).exists())
    control_kill(actor="test", reason="stop now")
    # The running SLEEP stops at once and goes back to the queue uncounted; the process stays.
    wait_until(lambda: Action.objects.filter(pk=slow.pk, status=ActionStatus.PENDING, attempts=0).exists())
    daemon.wait_for_output("waits for a revive")
    assert daemon.proc.poll() is None, daemon.output()
    Action.objects.filter(pk=slow.pk).update(payload={"seconds": 0})  # make the re-run quick
    control_revive(actor="test", reason="go on")
    wait_until(lambda: Action.objects.get(pk=slow.pk).status == ActionStatus.SUCCESS)


def test_run_aol_daemon__proof_on_the_command_line_is_published_on_the_lease(start_daemon):
    from orchestration.services.control import control_set_proof_mode
    from orchestration.services.status import status_snapshot

    control_set_proof_mode(enabled=False, actor="test", reason="go live")
    daemon = start_daemon("--proof")
    daemon.wait_for_output("[AOL Tick 0]")
    assert "[AOL] PROOF is forced by its command line (--proof)" in daemon.output()
    assert Lease.objects.get().proof_forced_by == "its command line (--proof)"
    flags = status_snapshot()["flags"]
    assert (flags["requested_mode"], flags["applied_mode"], flags["mode"]) == ("REAL", "PROOF", "PROOF")
    assert flags["mode_note"].startswith(
        "REAL requested; the running daemon is forced to PROOF by its command line (--proof)."
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert Lease.objects.get().proof_forced_by == ""  # released with the lease
