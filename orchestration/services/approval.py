"""The approval gate: a person approves a PROOF artifact before its action runs for REAL.

In REAL mode a gated action (``Action.requires_approval``, or its type in
AOL_APPROVAL_REQUIRED_TYPES) is first claimed in PROOF (``action_claim_mode``, below): its adapter
writes the artifact, and the action waits as AWAITING_APPROVAL with the artifact's SHA-256. An
operator with ``approve_action`` reads the artifact in the console and approves it (the action
becomes due again, bound to that SHA-256) or rejects it (REJECTED, terminal). Before acting for
real the daemon re-renders the PROOF content (``approval_verify_before_real``) and refuses, as a
permanent error, if it no longer hashes to the approved SHA-256: what goes out is what was approved.
"""

import logging
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from django.db import transaction

from orchestration.adapters import ActionAdapter, adapter_get
from orchestration.adapters.artifacts import sha256_bytes
from orchestration.adapters.store import artifact_put, artifact_read, artifact_rows_write
from orchestration.conf import approval_required_types
from orchestration.dbclock import DbNow
from orchestration.exceptions import (
    AdapterError,
    ApprovalRefused,
    ArtifactNotFound,
    InvalidAction,
    PermanentAdapterError,
    UnknownActionType,
)
from orchestration.models import Action, ActionStatus, AuditOutcome, ClaimedMode
from orchestration.services.audit import audit_write
from orchestration.services.control import operator_reason_clean
from orchestration.services.enqueue import action_payload_validate
from orchestration.services.logs import log_write

logger = logging.getLogger("orchestration")

#: The most of an artifact the console shows (the SHA-256 always covers the whole file).
MAX_SHOWN_BYTES = 256 * 1024


@dataclass(frozen=True)
class ArtifactReview:
    """What a person sees before approving: the artifact's text and whether it is still the one made."""

    action: Action
    ref: str
    sha256: str  # recorded when the PROOF run made it
    file_sha256: str  # of the file now ("" when missing)
    rendered_sha256: str  # of the content the action renders now ("" when it cannot)
    text: str
    truncated: bool
    problem: str  # why it cannot be approved as it stands ("" when it can)


def _render_sha256(adapter: ActionAdapter, action: Action) -> str:
    return sha256_bytes(adapter.proof_render(action).content)


def approval_review(*, action: Action) -> ArtifactReview:
    """Read the artifact awaiting approval and check it against its recorded SHA-256 and the action."""
    ref, sha256 = action.approval_artifact_ref, action.approval_sha256
    data, problem, file_sha256 = b"", "", ""
    try:
        data = artifact_read(ref=ref)
        file_sha256 = sha256_bytes(data)
    except ArtifactNotFound as exc:
        problem = f"The artifact {ref or '(none)'} cannot be read ({exc})."
    rendered = ""
    try:
        rendered = _render_sha256(adapter_get(action.action_type), action)
    except (UnknownActionType, AdapterError, NotImplementedError, KeyError, TypeError, AttributeError) as exc:
        problem = problem or f"The action's PROOF content cannot be re-rendered ({type(exc).__name__}: {exc})."
    if not problem and file_sha256 != sha256:
        problem = f"The artifact file changed since it was made: it hashes to {file_sha256}, not the recorded {sha256}."
    if not problem and rendered != sha256:
        problem = (
            f"The action's content changed since its artifact was made: it now renders to {rendered}, "
            f"not the recorded {sha256}."
        )
    return ArtifactReview(
        action=action,
        ref=ref,
        sha256=sha256,
        file_sha256=file_sha256,
        rendered_sha256=rendered,
        text=data[:MAX_SHOWN_BYTES].decode("utf-8", errors="replace"),
        truncated=len(data) > MAX_SHOWN_BYTES,
        problem=problem,
    )


def _locked_awaiting(*, action_id: int, verb: str) -> Action:
    try:
        action_id = int(action_id)
    except (TypeError, ValueError):
        raise ApprovalRefused(f"{action_id!r} is not an action id; nothing changed.") from None
    action = Action.objects.select_for_update().filter(pk=action_id).first()
    if action is None:
        raise ApprovalRefused(f"There is no action #{action_id}; nothing changed.")
    if action.status != ActionStatus.AWAITING_APPROVAL:
        raise ApprovalRefused(
            f"Action #{action.pk} is {action.status}, not AWAITING_APPROVAL: there is nothing to {verb}; "
            "nothing changed."
        )
    return action


def _record_decision(*, action: Action, verb: str, actor: str, reason: str, message: str, after: dict) -> None:
    """The execution-log row (with the artifact decided on) and the audit row of an approval decision."""
    log_write(
        action_id=action.pk,
        message=message,
        actor=actor,
        artifact_ref=action.approval_artifact_ref,
        artifact_sha256=action.approval_sha256,
    )
    audit_write(
        actor=actor,
        verb=verb,
        outcome=AuditOutcome.DONE,
        reason=reason,
        target=f"action #{action.pk} ({action.action_type})",
        before={"status": ActionStatus.AWAITING_APPROVAL, "sha256": action.approval_sha256},
        after=after,
    )


def action_approve(*, action_id: int, sha256: str, actor: str, reason: str) -> Action:
    """Approve the artifact with ``sha256`` (the one the person reviewed): the action becomes due
    again, attempts reset, for a REAL run bound to that hash. Audited.

    ApprovalRefused, with nothing changed, when the action is not awaiting approval, when
    ``sha256`` is not the hash awaiting approval, or when the artifact file or the action's
    content no longer hash to it.
    """
    reason = operator_reason_clean(reason=reason, actor=actor, verb="approve an action")
    with transaction.atomic():
        action = _locked_awaiting(action_id=action_id, verb="approve")
        if (sha256 or "").strip().lower() != action.approval_sha256:
            raise ApprovalRefused(
                f"Action #{action.pk}: the artifact you reviewed (sha256 {sha256 or '(none)'}) is not the one "
                f"awaiting approval ({action.approval_sha256}). Reload it and review it again; nothing changed."
            )
        review = approval_review(action=action)
        if review.problem:
            logger.warning("approval refused action id=%s actor=%s: %s", action.pk, actor, review.problem)
            raise ApprovalRefused(
                f"Action #{action.pk} cannot be approved: {review.problem} Reject it (and enqueue it again if "
                "it should still go out); nothing changed."
            )
        updated = Action.objects.filter(
            pk=action.pk, status=ActionStatus.AWAITING_APPROVAL, approval_sha256=action.approval_sha256
        ).update(
            status=ActionStatus.PENDING,
            attempts=0,
            not_before=DbNow(),
            approved_by=actor[:255],
            approved_at=DbNow(),
            last_error="",
            updated_at=DbNow(),
        )
        if updated != 1:  # cannot happen while the row is locked; refuse rather than half-log
            raise ApprovalRefused(f"Action #{action.pk} changed while being approved; nothing changed. Try again.")
        _record_decision(
            action=action,
            verb="approve",
            actor=actor,
            reason=reason,
            message=f"approved by {actor}: the REAL run is bound to sha256 {action.approval_sha256}; reason: {reason}",
            after={"status": ActionStatus.PENDING, "approved_sha256": action.approval_sha256},
        )
    logger.info("action approved id=%s actor=%s sha256=%s", action.pk, actor, action.approval_sha256)
    action.refresh_from_db()
    return action


def action_reject(*, action_id: int, actor: str, reason: str) -> Action:
    """Reject the artifact awaiting approval: the action ends REJECTED (terminal, never run for real). Audited."""
    reason = operator_reason_clean(reason=reason, actor=actor, verb="reject an action")
    with transaction.atomic():
        action = _locked_awaiting(action_id=action_id, verb="reject")
        Action.objects.filter(pk=action.pk, status=ActionStatus.AWAITING_APPROVAL).update(
            status=ActionStatus.REJECTED, last_error=f"rejected by {actor}: {reason}"[:2000], updated_at=DbNow()
        )
        _record_decision(
            action=action,
            verb="reject",
            actor=actor,
            reason=reason,
            message=f"rejected by {actor}; it will not run for real; reason: {reason}",
            after={"status": ActionStatus.REJECTED},
        )
    logger.info("action rejected id=%s actor=%s", action.pk, actor)
    action.refresh_from_db()
    return action


# --- Edit before approval: approve, reject or modify, bound to exact bytes ------------------------------

#: The payload fields an approver may edit, per action type: the text people read. Anything else
#: (the account, the recipients, the endpoint) is what the planner decided: reject and re-enqueue to change it.
EDITABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "POST_SOCIAL": ("message",),
    "SEND_EMAIL": ("subject", "body"),
}


def action_editable_fields(*, action: Action) -> tuple[str, ...]:
    """The payload fields of ``action`` an approver may edit before approving it (empty: none)."""
    return tuple(name for name in EDITABLE_FIELDS.get(action.action_type, ()) if name in action.payload)


def _edited_artifact_name(ref: str, sha256: str) -> str:
    """The files-store name of an edited PROOF artifact: the action's own name, marked with the new hash.

    Not the original name: the files store writes a name once (a re-run finds its first copy), so
    new bytes need a name of their own; the hash makes a repeat of the same edit reuse its file.
    """
    path = PurePosixPath(ref)
    return str(path.with_name(f"{path.stem}.edit-{sha256[:16]}{path.suffix}"))


def action_edit_before_approval(*, action_id: int, changes: dict[str, Any], actor: str, reason: str) -> Action:
    """Change the text of an action awaiting approval: validate the new payload with its adapter,
    re-render and store its PROOF artifact, and bind the approval to the new SHA-256, in one
    transaction, with an execution-log row and an audit row holding before → after and who.

    The action stays AWAITING_APPROVAL: approving it then binds the edited bytes, and the REAL run
    checks them (``approval_verify_before_real``). Its idempotency key stays; the payload it was
    enqueued with is kept in ``planned_payload`` so that the planner enqueuing that key again with
    its original payload gets this action back, not a conflict. ApprovalRefused, with nothing
    written, when the action is not awaiting approval, a field may not be edited, or the new payload
    is not valid (the adapter's message says why).
    """
    reason = operator_reason_clean(reason=reason, actor=actor, verb="edit an action before approval")
    if not isinstance(changes, dict) or not changes:
        raise ApprovalRefused("Say what to change (for example the message); nothing changed.")
    with transaction.atomic():
        action = _locked_awaiting(action_id=action_id, verb="edit")
        editable = action_editable_fields(action=action)
        refused = sorted(name for name in changes if name not in editable)
        if refused:
            allowed = ", ".join(repr(name) for name in editable) or "nothing"
            raise ApprovalRefused(
                f"Action #{action.pk} ({action.action_type}): {', '.join(map(repr, refused))} cannot be edited before "
                f"approval (editable: {allowed}); reject it and enqueue it again to change more. Nothing changed."
            )
        for name, value in changes.items():
            if not isinstance(value, str):
                raise ApprovalRefused(
                    f"Action #{action.pk}: {name!r} must be text, not {type(value).__name__}; nothing changed."
                )
        # Browsers send CRLF from a textarea; the text the planner wrote (and the platform counts) has LF.
        cleaned = {name: value.replace("\r\n", "\n") for name, value in changes.items()}
        before_payload = action.payload
        payload = {**before_payload, **cleaned}
        if payload == before_payload:
            raise ApprovalRefused(f"Action #{action.pk}: the text is unchanged; nothing changed.")
        try:
            adapter, payload = action_payload_validate(action_type=action.action_type, payload=payload)
        except InvalidAction as exc:
            raise ApprovalRefused(
                f"Action #{action.pk}: the edited text is not valid: {exc} Nothing changed."
            ) from None
        if not adapter.supports_approval:
            raise ApprovalRefused(f"Action #{action.pk}: its adapter cannot re-render its PROOF; nothing changed.")
        old_ref, old_sha256 = action.approval_artifact_ref, action.approval_sha256
        action.payload = payload
        render = adapter.proof_render(action)
        name = _edited_artifact_name(render.ref, sha256_bytes(render.content))
        stored = artifact_put(name=name, content=render.content)
        artifact_rows_write(pending=[stored.pending])
        planned = before_payload if action.planned_payload is None else action.planned_payload
        updated = Action.objects.filter(
            pk=action.pk, status=ActionStatus.AWAITING_APPROVAL, approval_sha256=old_sha256
        ).update(
            payload=payload,
            planned_payload=planned,
            approval_artifact_ref=stored.ref,
            approval_sha256=stored.sha256,
            updated_at=DbNow(),
        )
        if updated != 1:  # cannot happen while the row is locked; refuse rather than half-log
            raise ApprovalRefused(f"Action #{action.pk} changed while being edited; nothing changed. Try again.")
        changed = sorted(name for name in cleaned if before_payload.get(name) != payload.get(name))
        log_write(
            action_id=action.pk,
            message=f"edited before approval by {actor} ({', '.join(changed)}): the approval now binds sha256 "
            f"{stored.sha256} (was {old_sha256}); reason: {reason}",
            actor=actor,
            artifact_ref=stored.ref,
            artifact_sha256=stored.sha256,
        )
        audit_write(
            actor=actor,
            verb="edit before approval",
            outcome=AuditOutcome.DONE,
            reason=reason,
            target=f"action #{action.pk} ({action.action_type})",
            before={**{name: before_payload.get(name) for name in changed}, "sha256": old_sha256, "artifact": old_ref},
            after={**{name: payload.get(name) for name in changed}, "sha256": stored.sha256, "artifact": stored.ref},
        )
    logger.info("action edited before approval id=%s actor=%s sha256=%s", action.pk, actor, stored.sha256)
    action.refresh_from_db()
    return action


# --- Daemon side: checks around the adapter call (on the worker thread) ---------------------------------


def approval_verify_before_real(*, adapter: ActionAdapter, action: Action) -> None:
    """Refuse (PermanentAdapterError) a REAL run of an approved action whose content is not the approved one."""
    try:
        rendered = _render_sha256(adapter, action)
    except NotImplementedError:
        raise PermanentAdapterError(
            f"{action.action_type} was approved, but its adapter cannot re-render its PROOF artifact, so the "
            "approved content cannot be verified; not run for real"
        ) from None
    if rendered != action.approval_sha256:
        raise PermanentAdapterError(
            f"content changed since approval: it renders to sha256 {rendered}, but "
            f"{action.approved_by or 'an operator'} approved {action.approval_sha256 or '(nothing)'}; not run for "
            "real. Discard it and enqueue it again to have the new content approved"
        )


def approval_check_proof_run(*, adapter: ActionAdapter, action: Action) -> None:
    """Refuse a gated PROOF run whose artifact could never be bound to an approval."""
    if not adapter.supports_approval:
        raise PermanentAdapterError(
            f"{action.action_type} requires approval in REAL mode, but its adapter cannot re-render its PROOF "
            "artifact, so an approval could not be bound to what it sends; not run"
        )


def action_approval_gated(*, action: Action) -> bool:
    """Does ``action``'s REAL run wait for a person's approval of its PROOF artifact?

    Gated: the action asked for it, or its type is in AOL_APPROVAL_REQUIRED_TYPES, and its adapter
    has a REAL integration at all (one without refuses REAL anyway; nobody is asked to approve it).
    """
    if not (action.requires_approval or action.action_type in approval_required_types()):
        return False
    try:
        return adapter_get(action.action_type).supports_real_for(action.payload)
    except UnknownActionType:
        return False


def action_claim_mode(*, action: Action, daemon_mode: str) -> str:
    """The mode ``action``'s attempt runs in: the daemon's, except that in REAL mode a gated action
    that has not been approved runs in PROOF (to make the artifact a person approves)."""
    if daemon_mode == ClaimedMode.REAL and action.approved_at is None and action_approval_gated(action=action):
        return ClaimedMode.PROOF
    return daemon_mode
