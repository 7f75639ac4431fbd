"""Edit before approval: the new text is validated, its PROOF re-rendered and bound, audited; the REAL run sends it."""

import pytest

from orchestration.adapters.artifacts import artifact_path, sha256_bytes
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import ApprovalRefused, ControlChangeRejected, IdempotencyConflict
from orchestration.models import Action, ActionStatus, AuditEntry, ExecutionLog
from orchestration.services.approval import action_approve, action_edit_before_approval, approval_review
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue, action_enqueue_many
from tests.fake_adapters import FLOW_ADAPTERS, sent_lines

pytestmark = pytest.mark.django_db

MESSAGE = "Launch day: we ship at noon"
EDITED = "Launch day: we ship at 1pm, see you there"
PAYLOAD = {"platform": "threads", "account": "acme", "message": MESSAGE}


@pytest.fixture(autouse=True)
def real_post_social(settings):
    settings.AOL_EXTRA_ADAPTERS = FLOW_ADAPTERS
    control_set_proof_mode(enabled=False, actor="test", reason="testing edits before approval")


def tick(n: int = 0):
    daemon = Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None)
    return daemon.tick(n)


def awaiting(key: str = "launch-1", payload: dict | None = None, action_type: str = "POST_SOCIAL") -> Action:
    action = action_enqueue(action_type=action_type, payload=payload or PAYLOAD, idempotency_key=key)[0]
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL, action.last_error
    return action


def state(action: Action) -> tuple:
    action.refresh_from_db()
    return (
        action.status,
        action.payload,
        action.planned_payload,
        action.approval_sha256,
        action.approval_artifact_ref,
        ExecutionLog.objects.filter(action_id=action.pk).count(),
        AuditEntry.objects.count(),
    )


def test_edit__rebinds_the_hash_to_the_re_rendered_proof_and_audits_before_after_and_who(artifacts_dir):
    action = awaiting()
    old_sha, old_ref = action.approval_sha256, action.approval_artifact_ref

    edited = action_edit_before_approval(
        action_id=action.pk, changes={"message": EDITED}, actor="alice", reason="time moved"
    )

    assert edited.status == ActionStatus.AWAITING_APPROVAL
    assert edited.payload == {**PAYLOAD, "message": EDITED} and edited.planned_payload == PAYLOAD
    assert edited.idempotency_key == "launch-1"
    content = artifact_path(edited.approval_artifact_ref).read_bytes()
    assert EDITED in content.decode() and sha256_bytes(content) == edited.approval_sha256 != old_sha
    assert artifact_path(old_ref).read_bytes() != content  # the first artifact is kept as it was
    review = approval_review(action=edited)
    assert review.problem == "" and review.rendered_sha256 == edited.approval_sha256
    audit = AuditEntry.objects.get(verb="edit before approval")
    assert (audit.actor, audit.reason, audit.outcome) == ("alice", "time moved", "DONE")
    assert audit.before == {"message": MESSAGE, "sha256": old_sha, "artifact": old_ref}
    assert audit.after == {
        "message": EDITED,
        "sha256": edited.approval_sha256,
        "artifact": edited.approval_artifact_ref,
    }
    log = ExecutionLog.objects.filter(action_id=action.pk).latest("id")
    assert "edited before approval by alice" in log.message and log.artifact_sha256 == edited.approval_sha256


def test_edit__then_approve__the_real_run_sends_the_edited_text_once(artifacts_dir):
    action = awaiting()
    edited = action_edit_before_approval(action_id=action.pk, changes={"message": EDITED}, actor="alice", reason="x")
    with pytest.raises(ApprovalRefused, match="not the one awaiting approval"):
        action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="bob", reason="the old one")
    action_approve(action_id=action.pk, sha256=edited.approval_sha256, actor="bob", reason="reads well")
    tick(1)
    tick(2)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS
    assert sent_lines(artifacts_dir) == [["launch-1", edited.approval_sha256, EDITED]]


def test_edit__twice__keeps_the_planners_first_payload(artifacts_dir):
    action = awaiting()
    action_edit_before_approval(action_id=action.pk, changes={"message": EDITED}, actor="alice", reason="one")
    again = action_edit_before_approval(action_id=action.pk, changes={"message": "Third"}, actor="bob", reason="two")
    assert again.payload["message"] == "Third" and again.planned_payload == PAYLOAD


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"message": "x" * 501}, "501 characters; threads allows at most 500"),
        ({"message": "   "}, "'message' must not be empty"),
        ({"platform": "x"}, "'platform' cannot be edited before approval (editable: 'message')"),
        ({"message": 5}, "'message' must be text"),
        ({"message": MESSAGE}, "the text is unchanged"),
        ({}, "Say what to change"),
    ],
)
def test_edit__bad_input__clear_error_nothing_written(artifacts_dir, changes, error):
    action = awaiting()
    before = state(action)
    files = sorted(artifacts_dir.rglob("*"))
    with pytest.raises(ApprovalRefused, match=error.replace("(", r"\(").replace(")", r"\)")):
        action_edit_before_approval(action_id=action.pk, changes=changes, actor="alice", reason="try")
    assert state(action) == before
    assert sorted(artifacts_dir.rglob("*")) == files


def test_edit__not_awaiting_approval_or_no_reason__refused_nothing_written(artifacts_dir):
    action = awaiting()
    action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="bob", reason="ok")
    before = state(action)
    with pytest.raises(ApprovalRefused, match="is PENDING, not AWAITING_APPROVAL"):
        action_edit_before_approval(action_id=action.pk, changes={"message": EDITED}, actor="alice", reason="late")
    with pytest.raises(ControlChangeRejected):
        action_edit_before_approval(action_id=action.pk, changes={"message": EDITED}, actor="alice", reason="")
    assert state(action) == before


def test_edit__send_email_subject_and_body(artifacts_dir, settings):
    settings.AOL_EXTRA_ADAPTERS = []  # the shipped SEND_EMAIL renders its PROOF; SMTP is configured below
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    payload = {"to": "ceo@example.com", "subject": "Q3 plan", "body": "Hello,\nthe plan."}
    action = awaiting(key="mail-1", payload=payload, action_type="SEND_EMAIL")
    edited = action_edit_before_approval(
        action_id=action.pk,
        changes={"subject": "Q3 plan (final)", "body": "Hi,\r\nthe final plan."},
        actor="a",
        reason="r",
    )
    assert edited.payload == {**payload, "subject": "Q3 plan (final)", "body": "Hi,\nthe final plan."}
    assert "Q3 plan (final)" in artifact_path(edited.approval_artifact_ref).read_text()
    with pytest.raises(ApprovalRefused, match="'to' cannot be edited"):
        action_edit_before_approval(action_id=action.pk, changes={"to": "x@example.com"}, actor="a", reason="r")


def test_enqueue_after_edit__the_planners_original_payload_returns_the_action_not_a_conflict(artifacts_dir):
    action = awaiting()
    action_edit_before_approval(action_id=action.pk, changes={"message": EDITED}, actor="alice", reason="x")

    again, created = action_enqueue(action_type="POST_SOCIAL", payload=PAYLOAD, idempotency_key="launch-1")
    assert (again.pk, created, again.payload["message"]) == (action.pk, False, EDITED)
    same, created = action_enqueue(
        action_type="POST_SOCIAL", payload={**PAYLOAD, "message": EDITED}, idempotency_key="launch-1"
    )
    assert (same.pk, created) == (action.pk, False)
    with pytest.raises(IdempotencyConflict):
        action_enqueue(action_type="POST_SOCIAL", payload={**PAYLOAD, "message": "other"}, idempotency_key="launch-1")
    report = action_enqueue_many(
        items=[{"action_type": "POST_SOCIAL", "payload": PAYLOAD, "idempotency_key": "launch-1"}]
    )
    assert (report.created, report.existing, report.conflicts) == ([], [action.pk], [])
    other = {**PAYLOAD, "message": "other"}
    report = action_enqueue_many(
        items=[{"action_type": "POST_SOCIAL", "payload": other, "idempotency_key": "launch-1"}]
    )
    assert [conflict.action_id for conflict in report.conflicts] == [action.pk]


def test_edit__database_artifact_store__the_edited_artifact_is_stored_with_the_edit(settings, artifacts_dir):
    from orchestration.adapters.store import artifact_read
    from orchestration.models import Artifact

    settings.AOL_ARTIFACT_STORE = "database"
    action = awaiting()
    edited = action_edit_before_approval(action_id=action.pk, changes={"message": EDITED}, actor="alice", reason="x")
    assert edited.approval_artifact_ref == f"db:sha256:{edited.approval_sha256}"
    assert Artifact.objects.filter(sha256=edited.approval_sha256).exists()
    assert EDITED in artifact_read(ref=edited.approval_artifact_ref).decode()
    assert approval_review(action=edited).problem == ""
    action_approve(action_id=action.pk, sha256=edited.approval_sha256, actor="bob", reason="ok")
    tick(1)
    assert sent_lines(artifacts_dir) == [["launch-1", edited.approval_sha256, EDITED]]
