"""How an attempt's outcome is recorded, and recovery of attempts whose daemon died (fenced on the lease token)."""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Case, F, Value, When

from orchestration.adapters import adapter_get
from orchestration.adapters.store import PendingArtifact, artifact_rows_write
from orchestration.conf import MAX_BACKOFF_SECONDS, action_type_settings
from orchestration.dbclock import DbNow
from orchestration.exceptions import LeaseNotHeld, UnknownActionType
from orchestration.models import (
    REMOTE_ID_MAX_LENGTH,
    REMOTE_URL_MAX_LENGTH,
    Action,
    ActionStatus,
    ClaimedMode,
    LogLevel,
)
from orchestration.services.lease import lease_fenced_actions, lease_is_current
from orchestration.services.logs import log_entry, log_write, log_write_many

logger = logging.getLogger("orchestration")


MAX_ERROR_LENGTH = 2000


def action_uncounted_fields() -> dict[str, Any]:
    """UPDATE fields that return a RUNNING action to the queue as if its attempt never happened."""
    return {
        "status": Case(When(attempts__lte=1, then=Value(ActionStatus.PENDING)), default=Value(ActionStatus.RETRY)),
        "attempts": F("attempts") - 1,
        "updated_at": DbNow(),
    }


@dataclass(frozen=True)
class Success:
    """A finished attempt waiting to be recorded (see ``action_mark_success_many``)."""

    action: Action
    message: str
    artifact_ref: str = ""
    artifact_sha256: str = ""
    finished_at: datetime | None = None  # when the attempt ended (its log row's time); None: now
    remote_id: str = ""  # what the REAL run made, in the remote side's terms (ActionResult.remote_id)
    remote_url: str = ""
    #: The database store's artifact, inserted in the transaction that records the success.
    pending_artifact: PendingArtifact | None = None


def action_mark_success(
    *,
    action: Action,
    token: int,
    actor: str,
    message: str,
    artifact_ref: str = "",
    artifact_sha256: str = "",
    pending_artifact: PendingArtifact | None = None,
    remote_id: str = "",
    remote_url: str = "",
) -> None:
    """Record success and its execution log in one transaction; LeaseNotHeld if fenced out."""
    action_mark_success_many(
        successes=[
            Success(
                action,
                message,
                artifact_ref,
                artifact_sha256,
                pending_artifact=pending_artifact,
                remote_id=remote_id,
                remote_url=remote_url,
            )
        ],
        token=token,
        actor=actor,
    )


def _remote_fields(successes: list[Success]) -> dict[str, Any]:
    """The remote id and URL of each success, as UPDATE values: one statement for the whole batch.

    An id longer than the column is cut; a URL longer than its column is dropped (a cut URL is wrong).
    """
    ids = {s.action.pk: s.remote_id[:REMOTE_ID_MAX_LENGTH] for s in successes if s.remote_id}
    urls = {s.action.pk: s.remote_url for s in successes if s.remote_url and len(s.remote_url) <= REMOTE_URL_MAX_LENGTH}
    fields: dict[str, Any] = {}
    for name, values in (("remote_id", ids), ("remote_url", urls)):
        if not values:
            fields[name] = ""
        elif len(successes) == 1:
            fields[name] = next(iter(values.values()))
        else:
            fields[name] = Case(*(When(pk=pk, then=Value(v)) for pk, v in values.items()), default=Value(""))
    return fields


def action_mark_success_many(*, successes: list[Success], token: int, actor: str) -> None:
    """Record several successes and their execution logs in one transaction (one UPDATE, one INSERT).

    All or nothing: if any of them is no longer RUNNING under ``token``, or the token is no
    longer current, nothing is recorded and LeaseNotHeld is raised; the actions stay RUNNING for
    the next lease holder's recovery to return to the queue. The database store's artifacts are
    inserted in the same transaction, so a SUCCESS and its artifact commit (or vanish) together.
    """
    if not successes:
        return
    ids = [success.action.pk for success in successes]
    with transaction.atomic():
        # The remote id and URL go in the same UPDATE as the status: a SUCCESS never lacks them.
        recorded = lease_fenced_actions(pks=ids, token=token).update(
            status=ActionStatus.SUCCESS, last_error="", updated_at=DbNow(), **_remote_fields(successes)
        )
        if recorded != len(set(ids)):
            which = f"action #{ids[0]}" if len(ids) == 1 else f"{len(ids)} actions (#{ids[0]}..#{ids[-1]})"
            raise LeaseNotHeld(f"{which}: lease token {token} is no longer current; result not recorded")
        artifact_rows_write(pending=(success.pending_artifact for success in successes))
        log_write_many(
            log_entry(
                action_id=success.action.pk,
                message=success.message,
                actor=actor,
                artifact_ref=success.artifact_ref,
                artifact_sha256=success.artifact_sha256,
                ts=success.finished_at,
            )
            for success in successes
        )
    for success in successes:
        success.action.status = ActionStatus.SUCCESS
        success.action.remote_id = success.remote_id[:REMOTE_ID_MAX_LENGTH]
        success.action.remote_url = success.remote_url if len(success.remote_url) <= REMOTE_URL_MAX_LENGTH else ""


def action_mark_failure(
    *, action: Action, token: int, actor: str, error: str, permanent: bool, retry_after_seconds: float | None = None
) -> str:
    """Retry with backoff, or dead-letter when the error is permanent or attempts are used up.

    Returns the new status. The attempt limit and the backoff come from the action type's settings
    (AOL_ACTION_TYPES); by default AOL_MAX_ATTEMPTS, and a backoff that grows by
    AOL_RETRY_BACKOFF_SECONDS per attempt made. ``retry_after_seconds`` (the remote side's
    Retry-After) replaces the backoff, up to a day.
    """
    error = error[:MAX_ERROR_LENGTH]
    settings = action_type_settings(action.action_type)
    fields: dict[str, Any] = {"last_error": error, "updated_at": DbNow()}
    if permanent or action.attempts >= settings.max_attempts:
        fields["status"] = ActionStatus.DLQ
        why = "permanent error" if permanent else f"attempt {action.attempts} of {settings.max_attempts} failed"
        message, level = f"moved to DLQ ({why}): {error}", LogLevel.ERROR
    else:
        if retry_after_seconds is not None:
            seconds, why = min(max(retry_after_seconds, 0.0), MAX_BACKOFF_SECONDS), " (as its Retry-After asked)"
        else:
            seconds, why = settings.backoff_for(attempts=action.attempts), ""
        backoff = timedelta(seconds=round(seconds, 3))
        fields["status"] = ActionStatus.RETRY
        fields["not_before"] = DbNow() + Value(backoff)
        message = (
            f"attempt {action.attempts} of {settings.max_attempts} failed, "
            f"retrying in {backoff.total_seconds():g}s{why}: {error}"
        )
        level = LogLevel.WARNING
    with transaction.atomic():
        if not lease_fenced_actions(pks=[action.pk], token=token).update(**fields):
            raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; failure not recorded")
        log_write(action_id=action.pk, level=level, message=message, actor=actor)
    action.status = fields["status"]
    action.last_error = error
    return action.status


def action_mark_interrupted(*, action: Action, token: int, actor: str, reason: str) -> None:
    """Return an attempt that stopped early on request to the queue, its attempt uncounted.

    Only for AttemptInterrupted: the adapter stopped at a point where running again is safe.
    """
    with transaction.atomic():
        if not lease_fenced_actions(pks=[action.pk], token=token).update(
            **action_uncounted_fields(), not_before=DbNow()
        ):
            raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not returned")
        log_write(
            action_id=action.pk,
            level=LogLevel.WARNING,
            message=f"attempt {action.attempts} interrupted ({reason}); returned to the queue, attempt not counted",
            actor=actor,
        )
    action.attempts -= 1
    action.status = ActionStatus.PENDING if action.attempts == 0 else ActionStatus.RETRY


def action_mark_needs_review(*, action: Action, token: int, actor: str, error: str) -> None:
    """Park an attempt whose outcome is unknown for a person (non-idempotent REAL adapters)."""
    error = error[:MAX_ERROR_LENGTH]
    with transaction.atomic():
        if not lease_fenced_actions(pks=[action.pk], token=token).update(
            status=ActionStatus.NEEDS_REVIEW, last_error=error, updated_at=DbNow()
        ):
            raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not parked")
        log_write(
            action_id=action.pk,
            level=LogLevel.ERROR,
            message=f"{NEEDS_REVIEW_MESSAGE}: {error}",
            actor=actor,
        )
    action.status = ActionStatus.NEEDS_REVIEW
    action.last_error = error


NEEDS_REVIEW_MESSAGE = (
    "outcome unknown and the adapter is not idempotent, so it is not retried automatically; "
    "parked as NEEDS_REVIEW: check whether the action took effect, then retry or discard it"
)


def action_outcome_unknown_policy(*, action_type: str, claimed_mode: str, payload: dict[str, Any] | None = None) -> str:
    """What to do with an attempt whose outcome is unknown: RETRY, or NEEDS_REVIEW.

    PROOF attempts are always retried (a re-run verifies the artifact and has the effect once).
    For a REAL attempt (or one of unknown mode) the type's ``orphan_policy`` (AOL_ACTION_TYPES)
    decides: ``auto`` (the default) retries idempotent adapters and parks the others for a person,
    ``retry`` always retries, ``needs_review`` always parks.
    """
    if claimed_mode == ClaimedMode.PROOF:
        return ActionStatus.RETRY
    try:
        adapter = adapter_get(action_type)
    except UnknownActionType:
        return ActionStatus.RETRY  # it cannot have run: its next attempt fails permanently
    policy = action_type_settings(action_type).orphan_policy
    if policy == "retry":
        return ActionStatus.RETRY
    if policy == "needs_review":
        return ActionStatus.NEEDS_REVIEW
    idempotent = adapter.is_idempotent if payload is None else adapter.idempotent_for(payload)
    return ActionStatus.RETRY if idempotent else ActionStatus.NEEDS_REVIEW


def action_mark_awaiting_approval(
    *,
    action: Action,
    token: int,
    actor: str,
    artifact_ref: str,
    artifact_sha256: str,
    pending_artifact: PendingArtifact | None = None,
) -> None:
    """Park a gated action after its PROOF run: its artifact and SHA-256 wait for a person (fenced; the
    database store's artifact is inserted in the same transaction)."""
    with transaction.atomic():
        if not lease_fenced_actions(pks=[action.pk], token=token).update(
            status=ActionStatus.AWAITING_APPROVAL,
            approval_artifact_ref=artifact_ref,
            approval_sha256=artifact_sha256,
            last_error="",
            updated_at=DbNow(),
        ):
            raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not parked")
        artifact_rows_write(pending=[pending_artifact])
        log_write(
            action_id=action.pk,
            message=f"PROOF artifact made for approval; the REAL run waits for a person to approve sha256 "
            f"{artifact_sha256}",
            actor=actor,
            artifact_ref=artifact_ref,
            artifact_sha256=artifact_sha256,
        )
    action.status = ActionStatus.AWAITING_APPROVAL
    action.approval_artifact_ref = artifact_ref
    action.approval_sha256 = artifact_sha256


def action_mark_cancelled_if_requested(*, action: Action, token: int, actor: str, outcome: str) -> bool:
    """End a RUNNING attempt as CANCELLED if an operator asked it to stop; False (nothing written) if not.

    ``outcome`` says how the attempt ended (interrupted, failed: …), for the execution log.
    """
    with transaction.atomic():
        if (
            not lease_fenced_actions(pks=[action.pk], token=token)
            .filter(cancel_requested=True)
            .update(
                status=ActionStatus.CANCELLED,
                last_error=f"cancelled on request; the attempt {outcome}"[:MAX_ERROR_LENGTH],
                updated_at=DbNow(),
            )
        ):
            return False
        log_write(
            action_id=action.pk,
            level=LogLevel.WARNING,
            message=f"cancelled as an operator asked; the attempt {outcome}",
            actor=actor,
        )
    action.status = ActionStatus.CANCELLED
    return True


@dataclass(frozen=True)
class RecoveryReport:
    retried: list[int]
    dead: list[int]
    review: list[int]
    cancelled: list[int] = field(default_factory=list)
    #: Of ``retried``: batch-claimed actions whose attempt was not counted (they may not have started).
    uncounted: list[int] = field(default_factory=list)


def action_recover_orphans(*, token: int, actor: str) -> RecoveryReport:
    """Return actions left RUNNING under an older lease token to RETRY, or DLQ if out of attempts.

    Their daemon died or was replaced mid-attempt, so the outcome is unknown; the attempt it
    started still counts. A REAL attempt of an adapter that is not idempotent is parked as
    NEEDS_REVIEW instead (see ``action_outcome_unknown_policy``). An action claimed in a batch
    (``claimed_in_batch``) may never have started: it goes back as RETRY with that attempt not
    counted, and being a retry it runs on its own next time (``action_batchable``). Called by a
    daemon right after it acquires the lease.
    """
    with transaction.atomic():
        orphans = list(
            Action.objects.orphaned(current_token=token).values_list(
                "pk",
                "attempts",
                "claimed_by",
                "action_type",
                "claimed_mode",
                "cancel_requested",
                "claimed_in_batch",
                "payload",
            )
        )
        if not orphans:
            return RecoveryReport(retried=[], dead=[], review=[], cancelled=[])
        review = [
            pk
            for pk, _, _, action_type, mode, _, _, payload in orphans
            if action_outcome_unknown_policy(action_type=action_type, claimed_mode=mode, payload=payload)
            == ActionStatus.NEEDS_REVIEW
        ]
        # An operator asked it to stop: it is not run again (unless its outcome needs a person).
        cancelled = [pk for pk, *_, cancel, _, _ in orphans if cancel and pk not in review]
        rest = [row for row in orphans if row[0] not in review and row[0] not in cancelled]
        uncounted = [pk for pk, *_, in_batch, _ in rest if in_batch]
        dead = [
            pk
            for pk, attempts, _, action_type, *_ in rest
            if pk not in uncounted and attempts >= action_type_settings(action_type).max_attempts
        ]
        retried = [pk for pk, *_ in rest if pk not in dead]
        base = Action.objects.filter(status=ActionStatus.RUNNING, lease_token__lt=token).filter(
            lease_is_current(token=token)
        )
        error = WORKER_LOST
        if review:
            base.filter(pk__in=review).update(status=ActionStatus.NEEDS_REVIEW, last_error=error, updated_at=DbNow())
        if dead:
            base.filter(pk__in=dead).update(status=ActionStatus.DLQ, last_error=error, updated_at=DbNow())
        counted = [pk for pk in retried if pk not in uncounted]
        if counted:
            base.filter(pk__in=counted).update(
                status=ActionStatus.RETRY, last_error=error, not_before=DbNow(), updated_at=DbNow()
            )
        if uncounted:
            base.filter(pk__in=uncounted).update(
                status=ActionStatus.RETRY,
                attempts=F("attempts") - 1,
                last_error=error,
                not_before=DbNow(),
                updated_at=DbNow(),
            )
        if cancelled:
            base.filter(pk__in=cancelled).update(status=ActionStatus.CANCELLED, last_error=error, updated_at=DbNow())
        outcome = {pk: "returned to the queue as RETRY" for pk in counted}
        outcome.update({pk: UNCOUNTED_MESSAGE for pk in uncounted})
        outcome.update({pk: "moved to DLQ: no attempts left" for pk in dead})
        outcome.update({pk: NEEDS_REVIEW_MESSAGE for pk in review})
        outcome.update({pk: "CANCELLED, as an operator had asked" for pk in cancelled})
        log_write_many(
            log_entry(
                action_id=pk,
                level=LogLevel.WARNING if pk in retried or pk in cancelled else LogLevel.ERROR,
                message=f"{error} (attempt {attempts}, claimed by {claimed_by or '?'}); {outcome[pk]}",
                actor=actor,
            )
            for pk, attempts, claimed_by, *_ in orphans
        )
    logger.warning(
        "recovered orphaned actions retried=%s (uncounted=%s) dead=%s review=%s cancelled=%s",
        retried,
        uncounted,
        dead,
        review,
        cancelled,
    )
    return RecoveryReport(retried=retried, dead=dead, review=review, cancelled=cancelled, uncounted=uncounted)


UNCOUNTED_MESSAGE = (
    "returned to the queue as RETRY, attempt not counted: it was claimed in a batch, so it may not have "
    "started; it runs on its own next time"
)


WORKER_LOST = "worker lost during attempt: its daemon stopped before recording a result"
