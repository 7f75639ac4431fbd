"""Recovery after a daemon dies mid-attempt: exactly-once effects, the attempt limit, NEEDS_REVIEW."""

import time

import pytest

from orchestration.models import Action, ActionStatus, Artifact, ClaimedMode, ExecutionLog
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until
from tests.fake_adapters import CRASH_EXIT_CODE
from tests.faults.conftest import (
    artifact_files,
    assert_nothing_running,
    one_store_per_database,
    sha256_file,
    stored_artifacts,
    stored_sha256,
    success_logs,
)

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def test_recovery__crash_after_artifact_written__rerun_verifies_sha256_and_writes_no_second_copy(
    start_daemon, artifacts_dir
):
    """Invariant: when a daemon dies after the PROOF artifact was written but before success was recorded,
    the next attempt finds the artifact for that key, verifies its SHA-256 and leaves the file alone
    (same inode, same mtime): one artifact, one success log that carries its hash."""
    action, _ = action_enqueue(
        action_type="CRASH", payload={"until_attempt": 1, "after_artifact": True}, idempotency_key="crash-after-write"
    )
    first = start_daemon("--proof")
    assert first.wait() == CRASH_EXIT_CODE, first.output()
    [artifact] = artifact_files(artifacts_dir, "crash")
    before, digest = artifact.stat(), sha256_file(artifact)
    assert Action.objects.get(pk=action.pk).status == ActionStatus.RUNNING

    second = start_daemon("--proof", "--standby")  # waits for the dead holder's lease to expire
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, message="re-run succeeded")

    assert artifact_files(artifacts_dir, "crash") == [artifact]
    after = artifact.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    [success] = success_logs(action)
    assert success.artifact_sha256 == digest
    assert "artifact found and verified" in success.message
    assert "Recovered 1 action(s)" in second.output()
    assert Action.objects.get(pk=action.pk).attempts == 2


@pytest.mark.parametrize("artifact_store", ["database"], indirect=True)
def test_recovery__database_store__crash_after_the_adapter_made_its_artifact__nothing_stored_until_the_success(
    start_daemon, artifacts_dir, artifact_store
):
    """Invariant (AOL_ARTIFACT_STORE=database): a daemon that dies after its adapter produced the artifact but
    before the SUCCESS committed leaves no artifact at all (no row, no file): the artifact is written in the
    SUCCESS's transaction. The re-run stores exactly one, and the one success log carries its hash."""
    action, _ = action_enqueue(
        action_type="CRASH", payload={"until_attempt": 1, "after_artifact": True}, idempotency_key="crash-after-write"
    )
    first = start_daemon("--proof")
    assert first.wait() == CRASH_EXIT_CODE, first.output()
    assert Action.objects.get(pk=action.pk).status == ActionStatus.RUNNING
    assert not Artifact.objects.exists() and stored_artifacts(artifacts_dir, "crash") == []

    start_daemon("--proof", "--standby")
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, message="re-run succeeded")

    [success] = success_logs(action)
    assert stored_artifacts(artifacts_dir, "crash") == [success.artifact_ref]
    assert stored_sha256(success.artifact_ref) == success.artifact_sha256
    assert Action.objects.get(pk=action.pk).attempts == 2


def restart_until_dead_lettered(start_daemon, poison: Action, *args: str, tries: int, on_first_death=None) -> int:
    """Start a PROOF standby daemon again after each crash until ``poison`` is in the DLQ; returns the
    number of crashes (each exited with CRASH_EXIT_CODE). ``on_first_death`` runs right after the first."""
    deaths = 0
    for _ in range(tries):
        daemon = start_daemon("--proof", "--standby", *args)
        wait_until(
            lambda d=daemon: d.proc.poll() is not None or Action.objects.get(pk=poison.pk).status == ActionStatus.DLQ,
            timeout=20,
            message="a crash or the DLQ",
        )
        if daemon.proc.poll() is None:
            return deaths
        assert daemon.proc.returncode == CRASH_EXIT_CODE, daemon.output()
        if deaths == 0 and on_first_death is not None:
            on_first_death()
        deaths += 1
    pytest.fail("the poison action never reached the DLQ")


@one_store_per_database
def test_recovery__adapter_kills_its_process__dlq_after_attempt_limit_worker_lost_others_complete(
    start_daemon, artifacts_dir, artifact_store
):
    """Invariant: an action whose adapter kills the process on every attempt, with the daemon restarted after
    each death, reaches DLQ after AOL_MAX_ATTEMPTS (3) attempts with "worker lost during attempt"; the
    other actions, queued right behind it, each succeed once and never lose an attempt to its crashes
    (a daemon claims one action at a time, so only the crashing one is orphaned)."""
    poison, _ = action_enqueue(action_type="CRASH", payload={}, idempotency_key="poison")
    others = [
        action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key=f"ok-{i}")[0] for i in range(4)
    ]

    deaths = restart_until_dead_lettered(start_daemon, poison, tries=6)

    poison.refresh_from_db()
    assert deaths == 3
    assert poison.status == ActionStatus.DLQ and poison.attempts == 3
    assert poison.last_error.startswith("worker lost during attempt")
    lost = ExecutionLog.objects.filter(action_id=poison.pk, message__startswith="worker lost during attempt")
    assert lost.count() == 3  # two returned to the queue, the last one dead-lettered
    for action in others:
        action.refresh_from_db()
        assert (action.status, action.attempts) == (ActionStatus.SUCCESS, 1), action.idempotency_key
        assert len(success_logs(action)) == 1
    assert sorted(success_logs(a)[0].artifact_ref for a in others) == stored_artifacts(artifacts_dir, "sleep")
    assert_nothing_running()


@one_store_per_database
def test_recovery__adapter_kills_its_process_mid_batch__batch_mates_lose_no_attempt_and_run_once(
    start_daemon, artifacts_dir, artifact_store
):
    """Invariant: when the process dies in the middle of a batch claim, every batch-mate (those that ran but
    whose success was not recorded yet, and those not started) goes back to the queue with its attempt
    uncounted, then succeeds exactly once (one success log, one artifact: a re-run verifies the
    artifact and does not rewrite it). The crashing action runs alone from then on and reaches the DLQ
    after AOL_MAX_ATTEMPTS counted attempts; its uncounted batch run makes one death more."""
    # Fast first: the first claim takes one action and measures it; the next claims take batches.
    warm = [
        action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key=f"warm-{i}", priority=10)[0]
        for i in range(3)
    ]
    before = [
        action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key=f"before-{i}", priority=5)[0]
        for i in range(4)
    ]
    poison, _ = action_enqueue(action_type="CRASH", payload={}, idempotency_key="poison")
    after = [
        action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key=f"after-{i}")[0] for i in range(4)
    ]
    others = warm + before + after

    first_death = {}

    def note_batch_mates() -> None:  # who shared the poison's claim when it first crashed
        first_death["poison_batched"] = Action.objects.get(pk=poison.pk).claimed_in_batch
        first_death["mates"] = set(
            Action.objects.filter(status=ActionStatus.RUNNING, claimed_in_batch=True)
            .exclude(pk=poison.pk)
            .values_list("pk", flat=True)
        )

    deaths = restart_until_dead_lettered(
        start_daemon, poison, "--max-actions", "20", tries=8, on_first_death=note_batch_mates
    )
    mates = first_death["mates"]
    assert first_death["poison_batched"] and mates, "the poison was not claimed in a batch: the scenario did not happen"
    poison.refresh_from_db()
    assert (poison.status, poison.attempts) == (ActionStatus.DLQ, 3)
    assert deaths == 4  # its batch run was not counted
    wait_until(
        lambda: Action.objects.filter(status=ActionStatus.SUCCESS).count() == len(others),
        timeout=20,
        message="the rest done",
    )
    for action in others:
        action.refresh_from_db()
        assert (action.status, action.attempts) == (ActionStatus.SUCCESS, 1), action.idempotency_key
        assert len(success_logs(action)) == 1, action.idempotency_key
    for pk in mates:
        [lost] = ExecutionLog.objects.filter(action_id=pk, message__startswith="worker lost during attempt")
        assert "attempt not counted" in lost.message
    assert sorted(success_logs(a)[0].artifact_ref for a in others) == stored_artifacts(artifacts_dir, "sleep")
    assert_nothing_running()


@pytest.mark.parametrize("proof", [False, True], ids=["REAL-needs-review", "PROOF-retried"])
def test_recovery__orphaned_attempt_of_non_idempotent_adapter__real_parked_as_needs_review_proof_retried(
    start_daemon, proof
):
    """Invariant: an attempt with an unknown outcome (its daemon died) of an adapter that is not idempotent
    is parked as NEEDS_REVIEW, attempt kept, never re-run automatically, when it ran in REAL mode;
    the same crash in PROOF mode (always idempotent) is retried."""
    control_set_proof_mode(enabled=proof, actor="test", reason="fault drill")
    action, _ = action_enqueue(action_type="CRASH_REAL", payload={"until_attempt": 1}, idempotency_key="crash-real")
    first = start_daemon()
    assert first.wait() == CRASH_EXIT_CODE, first.output()
    action.refresh_from_db()
    assert action.claimed_mode == (ClaimedMode.PROOF if proof else ClaimedMode.REAL)

    second = start_daemon("--standby")
    if proof:
        wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, message="retried")
        assert Action.objects.get(pk=action.pk).attempts == 2
        return
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.NEEDS_REVIEW, message="parked")
    second.wait_for_output("1 to NEEDS_REVIEW")
    time.sleep(1.0)  # several more ticks: it must stay parked
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.NEEDS_REVIEW, 1)
    assert action.last_error.startswith("worker lost during attempt")
    assert ExecutionLog.objects.filter(action_id=action.pk, message__contains="parked as NEEDS_REVIEW").count() == 1
    assert second.proc.poll() is None
    assert_nothing_running()
