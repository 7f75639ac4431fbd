"""The approval gate, in process: PROOF first, AWAITING_APPROVAL, approve/reject, the hash binding."""

import pytest

from orchestration.adapters.artifacts import artifact_path, sha256_bytes
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import ApprovalRefused, ControlChangeRejected, IdempotencyConflict, InvalidAction
from orchestration.models import Action, ActionStatus, AuditEntry, ClaimedMode, ExecutionLog
from orchestration.services.approval import action_approve, action_reject, approval_review
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.fake_adapters import FLOW_ADAPTERS, sent_lines

pytestmark = pytest.mark.django_db

MESSAGE = "Launch day: we ship at noon"


@pytest.fixture(autouse=True)
def real_post_social(settings):
    """POST_SOCIAL with a REAL integration that writes sent.log; the daemon in REAL mode."""
    settings.AOL_EXTRA_ADAPTERS = FLOW_ADAPTERS
    control_set_proof_mode(enabled=False, actor="test", reason="testing the approval gate")


def tick(n: int = 0):
    daemon = Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None)
    return daemon.tick(n)


def enqueue(key: str = "launch-1", **extra) -> Action:
    return action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "threads", "account": "acme", "message": MESSAGE},
        idempotency_key=key,
        **extra,
    )[0]


def awaiting(key: str = "launch-1") -> Action:
    action = enqueue(key)
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL, action.last_error
    return action


def snapshot(action: Action) -> tuple:
    action.refresh_from_db()
    return (
        action.status,
        action.attempts,
        action.approved_at,
        action.approval_sha256,
        ExecutionLog.objects.filter(action_id=action.pk).count(),
        AuditEntry.objects.count(),
    )


def test_gate__real_mode_runs_proof_first_and_waits_with_the_artifact_and_its_sha256(artifacts_dir):
    action = enqueue()
    report = tick()
    action.refresh_from_db()
    assert (report.attempted, report.succeeded) == (1, 1)
    assert action.status == ActionStatus.AWAITING_APPROVAL
    assert action.claimed_mode == ClaimedMode.PROOF  # recovery retries it: nothing went out
    content = artifact_path(action.approval_artifact_ref).read_bytes()
    assert sha256_bytes(content) == action.approval_sha256
    assert MESSAGE in content.decode() and "nothing was posted" in content.decode()
    assert sent_lines(artifacts_dir) == []
    log = ExecutionLog.objects.get(action_id=action.pk)
    assert log.artifact_sha256 == action.approval_sha256 and "waits for a person" in log.message
    tick(1)  # nothing more happens without a person
    assert Action.objects.get(pk=action.pk).status == ActionStatus.AWAITING_APPROVAL
    assert sent_lines(artifacts_dir) == []


def test_gate__approved_action_runs_for_real_once_with_the_approved_hash(artifacts_dir):
    action = awaiting()
    approved = action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="alice", reason="on brand")
    assert (approved.status, approved.attempts, approved.approved_by) == (ActionStatus.PENDING, 0, "alice")

    tick(1)
    tick(2)

    action.refresh_from_db()
    assert (action.status, action.attempts, action.claimed_mode) == (ActionStatus.SUCCESS, 1, ClaimedMode.REAL)
    assert sent_lines(artifacts_dir) == [["launch-1", action.approval_sha256, MESSAGE]]
    success = ExecutionLog.objects.filter(action_id=action.pk, message__startswith="REAL: posted").get()
    assert success.artifact_sha256 == action.approval_sha256 and "approved by alice" in success.message
    audit = AuditEntry.objects.get(verb="approve")
    assert (audit.actor, audit.outcome, audit.reason) == ("alice", "DONE", "on brand")
    assert audit.after == {"status": "PENDING", "approved_sha256": action.approval_sha256}


def test_gate__content_changed_after_approval__refused_before_acting_nothing_sent(artifacts_dir):
    action = awaiting()
    action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="alice", reason="ok")
    Action.objects.filter(pk=action.pk).update(payload={"platform": "threads", "account": "acme", "message": "EDITED"})
    tick(1)
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ
    assert "content changed since approval" in action.last_error and action.approval_sha256 in action.last_error
    assert sent_lines(artifacts_dir) == []


def test_gate__proof_mode_runs_gated_actions_in_proof_without_asking(artifacts_dir):
    control_set_proof_mode(enabled=True, actor="test", reason="back to PROOF")
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS and action.approved_at is None
    assert sent_lines(artifacts_dir) == []


def test_gate__an_adapter_without_real_integration_is_not_gated_it_is_refused_as_before(settings):
    settings.AOL_EXTRA_ADAPTERS = []  # the shipped POST_SOCIAL: no REAL integration
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ and "RealRunUnconfigured" in action.last_error


def test_gate__a_single_action_can_ask_for_approval_when_its_type_does_not(settings):
    settings.AOL_APPROVAL_REQUIRED_TYPES = []
    plain = enqueue("plain")
    gated = enqueue("gated", requires_approval=True)
    tick()
    plain.refresh_from_db()
    gated.refresh_from_db()
    assert (plain.status, gated.status) == (ActionStatus.SUCCESS, ActionStatus.AWAITING_APPROVAL)


def test_enqueue__requires_approval_for_a_type_that_cannot_re_render_is_refused_nothing_written():
    with pytest.raises(InvalidAction, match="DRAFT_SOCIAL actions cannot require approval"):
        action_enqueue(action_type="DRAFT_SOCIAL", payload={"platform": "x", "brief": "b"}, requires_approval=True)
    assert not Action.objects.exists()


def test_enqueue__same_key_with_another_approval_requirement_is_a_conflict():
    enqueue()
    with pytest.raises(IdempotencyConflict, match="does not require approval"):
        enqueue(requires_approval=True)
    assert Action.objects.count() == 1


def test_reject__ends_rejected_audited_and_never_runs(artifacts_dir):
    action = awaiting()
    rejected = action_reject(action_id=action.pk, actor="bob", reason="off brand")
    assert rejected.status == ActionStatus.REJECTED and "rejected by bob: off brand" in rejected.last_error
    assert AuditEntry.objects.get(verb="reject").before["sha256"] == action.approval_sha256
    tick(1)
    assert Action.objects.get(pk=action.pk).status == ActionStatus.REJECTED
    assert sent_lines(artifacts_dir) == []


# --- Bad input: a clear message, nothing changed ----------------------------------------------------------


def test_approve__artifact_file_changed__refused_nothing_changed():
    action = awaiting()
    before = snapshot(action)
    artifact_path(action.approval_artifact_ref).write_bytes(b"something else entirely\n")
    with pytest.raises(ApprovalRefused, match="artifact file changed since it was made"):
        action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="alice", reason="ok")
    assert snapshot(action) == before


def test_approve__artifact_file_missing__refused_nothing_changed():
    action = awaiting()
    before = snapshot(action)
    artifact_path(action.approval_artifact_ref).unlink()
    with pytest.raises(ApprovalRefused, match="cannot be read"):
        action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="alice", reason="ok")
    assert snapshot(action) == before


def test_approve__action_content_changed__refused_nothing_changed():
    action = awaiting()
    Action.objects.filter(pk=action.pk).update(payload={"platform": "threads", "account": "acme", "message": "new"})
    before = snapshot(action)
    with pytest.raises(ApprovalRefused, match="content changed since its artifact was made"):
        action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="alice", reason="ok")
    assert snapshot(action) == before
    assert "content changed" in approval_review(action=action).problem


def test_approve__a_hash_other_than_the_one_awaiting__refused_nothing_changed():
    action = awaiting()
    before = snapshot(action)
    with pytest.raises(ApprovalRefused, match="is not the one awaiting approval"):
        action_approve(action_id=action.pk, sha256="0" * 64, actor="alice", reason="ok")
    assert snapshot(action) == before


@pytest.mark.parametrize("status", [ActionStatus.PENDING, ActionStatus.SUCCESS, ActionStatus.REJECTED])
def test_approve_and_reject__an_action_not_awaiting_approval__refused_nothing_changed(status):
    action = awaiting()
    Action.objects.filter(pk=action.pk).update(status=status)
    before = snapshot(action)
    with pytest.raises(ApprovalRefused, match=f"is {status}, not AWAITING_APPROVAL"):
        action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="alice", reason="ok")
    with pytest.raises(ApprovalRefused, match=f"is {status}, not AWAITING_APPROVAL"):
        action_reject(action_id=action.pk, actor="alice", reason="no")
    assert snapshot(action) == before


def test_approve__unknown_action_or_no_reason__refused():
    with pytest.raises(ApprovalRefused, match="no action #999"):
        action_approve(action_id=999, sha256="a" * 64, actor="alice", reason="ok")
    action = awaiting()
    before = snapshot(action)
    with pytest.raises(ControlChangeRejected, match="reason is required"):
        action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="alice", reason="  ")
    assert snapshot(action) == before
