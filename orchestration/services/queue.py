"""The action queue: enqueue, claim, complete, retry, dead-letter, recover.

Delivery is at least once: an attempt is counted when an action is claimed, so an action whose
adapter crashes the process is still retired to the DLQ after AOL_MAX_ATTEMPTS claims. Every
write made on behalf of a daemon is fenced on its lease token (see services/lease.py).
"""

import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, F, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from orchestration.adapters import ActionAdapter, adapter_get
from orchestration.conf import aol
from orchestration.exceptions import (
    ControlChangeRejected,
    IdempotencyConflict,
    InvalidPayload,
    LeaseNotHeld,
    UnknownActionType,
)
from orchestration.models import (
    ATTENTION_STATUSES,
    DUE_STATUSES,
    OPEN_STATUSES,
    Action,
    ActionStatus,
    AuditOutcome,
    ClaimedMode,
    LogLevel,
)
from orchestration.services.audit import audit_write, describe_ids
from orchestration.services.control import operator_reason_clean
from orchestration.services.lease import lease_is_current
from orchestration.services.logs import log_entry, log_write, log_write_many

logger = logging.getLogger("orchestration")

MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_PAYLOAD_DEPTH = 20
MAX_ERROR_LENGTH = 2000


# --- Enqueue ----------------------------------------------------------------------------------


def action_payload_from_json(*, text: str) -> dict[str, Any]:
    """Parse a payload given as JSON text; InvalidPayload says what is wrong with it."""
    if isinstance(text, str) and len(text.encode("utf-8", "surrogatepass")) > aol.max_payload_bytes:
        raise InvalidPayload(f"Payload is larger than {aol.max_payload_bytes} bytes (AOL_MAX_PAYLOAD_BYTES).")
    try:
        payload = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise InvalidPayload(f"Payload is not valid JSON: {exc}.") from None
    except RecursionError:
        raise InvalidPayload(f"Payload is nested more than {MAX_PAYLOAD_DEPTH} levels deep.") from None
    return payload


def _check_payload_shape(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidPayload(f"Payload must be a JSON object, not {type(payload).__name__}.")
    # Depth first: the walk is bounded, while json.dumps of a very deep value would hit the
    # interpreter's recursion limit.
    if _depth(payload) > MAX_PAYLOAD_DEPTH:
        raise InvalidPayload(f"Payload is nested more than {MAX_PAYLOAD_DEPTH} levels deep.")
    try:
        encoded = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayload("Payload contains text that is not valid UTF-8.") from None
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"Payload cannot be stored as JSON: {exc}.") from None
    if len(encoded) > aol.max_payload_bytes:
        raise InvalidPayload(
            f"Payload is {len(encoded)} bytes; the limit is {aol.max_payload_bytes} (AOL_MAX_PAYLOAD_BYTES)."
        )
    return json.loads(encoded)  # normalised: exactly what the database will hand back


def action_payload_validate(*, action_type: str, payload: Any) -> tuple[ActionAdapter, dict[str, Any]]:
    """The adapter and the normalised payload; InvalidAction says what is wrong.

    Used at enqueue time and again by the daemon before each attempt, so a row written around
    the services (a shell, an older version) fails permanently instead of crashing anything.
    """
    adapter = adapter_get(action_type)
    payload = _check_payload_shape(payload)
    adapter.validate(payload)
    return adapter, payload


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_PAYLOAD_DEPTH:
        return level
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return max((_depth(child, level + 1) for child in children), default=level)


def _check_key(key: str | None, action_type: str) -> str:
    if key is None:
        return f"{action_type.lower()}-{uuid.uuid4().hex}"
    if not isinstance(key, str) or not key.strip():
        raise InvalidPayload("The idempotency key must be a non-empty string.")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidPayload(
            f"The idempotency key is {len(key)} characters; the limit is {MAX_IDEMPOTENCY_KEY_LENGTH}."
        )
    if not key.isprintable():
        raise InvalidPayload("The idempotency key must not contain control characters.")
    return key


def action_enqueue(
    *,
    action_type: str,
    payload: Any,
    idempotency_key: str | None = None,
    not_before: datetime | None = None,
) -> tuple[Action, bool]:
    """Validate and queue an action; returns ``(action, created)``.

    The same key with the same type and payload returns the existing action (``created`` False);
    the same key with anything else raises IdempotencyConflict. Nothing is written on error.
    """
    _, payload = action_payload_validate(action_type=action_type, payload=payload)
    key = _check_key(idempotency_key, action_type)
    if not_before is not None and timezone.is_naive(not_before):
        raise InvalidPayload("not_before must include a timezone (for example 2026-11-21T12:00:00Z).")
    fields: dict[str, Any] = {"idempotency_key": key, "action_type": action_type, "payload": payload}
    if not_before is not None:
        fields["not_before"] = not_before
    try:
        with transaction.atomic():
            action = Action.objects.create(**fields)
    except IntegrityError:
        existing = Action.objects.filter(idempotency_key=key).first()
        if existing is None:
            raise
        if existing.action_type != action_type or existing.payload != payload:
            raise IdempotencyConflict(
                f"Idempotency key {key!r} is already used by action #{existing.pk} ({existing.action_type}) "
                "with a different payload; send the same payload to get that action back, or use a new key."
            ) from None
        return existing, False
    logger.info("action enqueued id=%s type=%s key=%s", action.pk, action_type, key)
    return action, True


# --- Claim and complete (daemon side, fenced on the lease token) --------------------------------


def action_claim_due(*, owner: str, token: int, limit: int, proof: bool | None = None) -> list[Action]:
    """Mark up to ``limit`` due actions RUNNING under ``token``, oldest due first.

    The claim is one short transaction; the work happens after it commits. On PostgreSQL the
    rows are locked with SKIP LOCKED so two claimers never get the same row and never wait on
    each other; SQLite has no row locks, but the IMMEDIATE transaction serialises writers.
    ``proof`` records the mode the attempt runs in (None: unknown), which recovery needs to
    decide whether an attempt with an unknown outcome may be retried.
    """
    mode = "" if proof is None else ClaimedMode.PROOF if proof else ClaimedMode.REAL
    with transaction.atomic():
        due = Action.objects.due()
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        actions = list(due[:limit])
        if not actions:
            return []
        claimed = (
            Action.objects.filter(pk__in=[a.pk for a in actions])
            .filter(lease_is_current(token=token))
            .update(
                status=ActionStatus.RUNNING,
                attempts=F("attempts") + 1,
                claimed_by=owner,
                lease_token=token,
                claimed_mode=mode,
                updated_at=Now(),
            )
        )
        if claimed != len(actions):
            raise LeaseNotHeld(f"lease token {token} is no longer current; claimed nothing")
    for action in actions:
        action.status = ActionStatus.RUNNING
        action.attempts += 1
        action.claimed_by = owner
        action.lease_token = token
        action.claimed_mode = mode
    return actions


def _fenced(action: Action, token: int):
    return Action.objects.filter(pk=action.pk, status=ActionStatus.RUNNING, lease_token=token).filter(
        lease_is_current(token=token)
    )


def action_mark_success(
    *, action: Action, token: int, actor: str, message: str, artifact_ref: str = "", artifact_sha256: str = ""
) -> None:
    """Record success and its execution log in one transaction; LeaseNotHeld if fenced out."""
    with transaction.atomic():
        if not _fenced(action, token).update(status=ActionStatus.SUCCESS, last_error="", updated_at=Now()):
            raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; result not recorded")
        log_write(
            action_id=action.pk,
            message=message,
            actor=actor,
            artifact_ref=artifact_ref,
            artifact_sha256=artifact_sha256,
        )
    action.status = ActionStatus.SUCCESS


def action_mark_failure(*, action: Action, token: int, actor: str, error: str, permanent: bool) -> str:
    """Retry with backoff, or dead-letter when the error is permanent or attempts are used up.

    Returns the new status. The backoff grows by AOL_RETRY_BACKOFF_SECONDS per attempt made.
    """
    error = error[:MAX_ERROR_LENGTH]
    fields: dict[str, Any] = {"last_error": error, "updated_at": Now()}
    if permanent or action.attempts >= aol.max_attempts:
        fields["status"] = ActionStatus.DLQ
        why = "permanent error" if permanent else f"attempt {action.attempts} of {aol.max_attempts} failed"
        message, level = f"moved to DLQ ({why}): {error}", LogLevel.ERROR
    else:
        backoff = timedelta(seconds=aol.retry_backoff_seconds * action.attempts)
        fields["status"] = ActionStatus.RETRY
        fields["not_before"] = Now() + Value(backoff)
        message = (
            f"attempt {action.attempts} of {aol.max_attempts} failed, retrying in {backoff.total_seconds():g}s: {error}"
        )
        level = LogLevel.WARNING
    with transaction.atomic():
        if not _fenced(action, token).update(**fields):
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
        if not _fenced(action, token).update(
            status=Case(When(attempts__lte=1, then=Value(ActionStatus.PENDING)), default=Value(ActionStatus.RETRY)),
            attempts=F("attempts") - 1,
            not_before=Now(),
            updated_at=Now(),
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
        if not _fenced(action, token).update(status=ActionStatus.NEEDS_REVIEW, last_error=error, updated_at=Now()):
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


def action_outcome_unknown_policy(*, action_type: str, claimed_mode: str) -> str:
    """What to do with an attempt whose outcome is unknown: RETRY, or NEEDS_REVIEW.

    PROOF attempts and idempotent adapters are retried (a re-run has the effect once); a REAL
    attempt (or one of unknown mode) of an adapter that is not idempotent waits for a person.
    """
    if claimed_mode == ClaimedMode.PROOF:
        return ActionStatus.RETRY
    try:
        adapter = adapter_get(action_type)
    except UnknownActionType:
        return ActionStatus.RETRY  # it cannot have run: its next attempt fails permanently
    return ActionStatus.RETRY if adapter.is_idempotent else ActionStatus.NEEDS_REVIEW


def action_release_unstarted(*, actions: list[Action], token: int) -> int:
    """Give claimed-but-unstarted actions back to the queue, uncounting their attempt."""
    if not actions:
        return 0
    released = (
        Action.objects.filter(pk__in=[a.pk for a in actions], status=ActionStatus.RUNNING, lease_token=token)
        .filter(lease_is_current(token=token))
        .update(
            status=Case(When(attempts__lte=1, then=Value(ActionStatus.PENDING)), default=Value(ActionStatus.RETRY)),
            attempts=F("attempts") - 1,
            updated_at=Now(),
        )
    )
    return released


@dataclass(frozen=True)
class RecoveryReport:
    retried: list[int]
    dead: list[int]
    review: list[int]


def action_recover_orphans(*, token: int, actor: str) -> RecoveryReport:
    """Return actions left RUNNING under an older lease token to RETRY, or DLQ if out of attempts.

    Their daemon died or was replaced mid-attempt, so the outcome is unknown; the attempt it
    started still counts. A REAL attempt of an adapter that is not idempotent is parked as
    NEEDS_REVIEW instead (see ``action_outcome_unknown_policy``). Called by a daemon right after
    it acquires the lease.
    """
    with transaction.atomic():
        orphans = list(
            Action.objects.orphaned(current_token=token).values_list(
                "pk", "attempts", "claimed_by", "action_type", "claimed_mode"
            )
        )
        if not orphans:
            return RecoveryReport(retried=[], dead=[], review=[])
        review = [
            pk
            for pk, _, _, action_type, mode in orphans
            if action_outcome_unknown_policy(action_type=action_type, claimed_mode=mode) == ActionStatus.NEEDS_REVIEW
        ]
        dead = [pk for pk, attempts, *_ in orphans if pk not in review and attempts >= aol.max_attempts]
        retried = [pk for pk, attempts, *_ in orphans if pk not in review and attempts < aol.max_attempts]
        base = Action.objects.filter(status=ActionStatus.RUNNING, lease_token__lt=token).filter(
            lease_is_current(token=token)
        )
        error = WORKER_LOST
        if review:
            base.filter(pk__in=review).update(status=ActionStatus.NEEDS_REVIEW, last_error=error, updated_at=Now())
        if dead:
            base.filter(pk__in=dead).update(status=ActionStatus.DLQ, last_error=error, updated_at=Now())
        if retried:
            base.filter(pk__in=retried).update(
                status=ActionStatus.RETRY, last_error=error, not_before=Now(), updated_at=Now()
            )
        outcome = {pk: "returned to the queue as RETRY" for pk in retried}
        outcome.update({pk: "moved to DLQ: no attempts left" for pk in dead})
        outcome.update({pk: NEEDS_REVIEW_MESSAGE for pk in review})
        log_write_many(
            log_entry(
                action_id=pk,
                level=LogLevel.WARNING if pk in retried else LogLevel.ERROR,
                message=f"{error} (attempt {attempts}, claimed by {claimed_by or '?'}); {outcome[pk]}",
                actor=actor,
            )
            for pk, attempts, claimed_by, *_ in orphans
        )
    logger.warning("recovered orphaned actions retried=%s dead=%s review=%s", retried, dead, review)
    return RecoveryReport(retried=retried, dead=dead, review=review)


WORKER_LOST = "worker lost during attempt: its daemon stopped before recording a result"


# --- Operator side ---------------------------------------------------------------------------


def action_log(*, action: Action, message: str, actor: str, level: str = LogLevel.INFO) -> None:
    log_write(action_id=action.pk, level=level, message=message, actor=actor)


def action_queue_depth() -> dict[str, int]:
    """How many actions wait in each open status (due, running, dead-lettered).

    Cheap at any table size: only open rows are counted, through the (status, action_type) index.
    """
    depth = {str(status): 0 for status in OPEN_STATUSES}
    rows = Action.objects.filter(status__in=OPEN_STATUSES).order_by().values_list("status").annotate(n=Count("id"))
    depth.update(dict(rows))
    return depth


#: The most actions one operator request may change; the admin's bulk pages cap at this too.
MAX_BULK_ACTIONS = 1000


def _operator_update(
    *,
    verb: str,
    eligible: Iterable[str],
    action_ids: Iterable[int] | None,
    actor: str,
    reason: str,
    limit: int,
    fields: dict[str, Any],
    after: dict[str, Any],
) -> list[int]:
    """Apply ``fields`` to the eligible actions among ``action_ids`` (None: all eligible, oldest
    first), at most ``limit``; one execution-log row per action and one audit row. Returns the ids."""
    reason = operator_reason_clean(reason=reason, actor=actor, verb=verb)
    eligible = [str(status) for status in eligible]
    selected: list[int] | None = None
    if action_ids is not None:
        try:
            selected = sorted({int(pk) for pk in action_ids})
        except (TypeError, ValueError):
            raise ControlChangeRejected("Action ids must be whole numbers.") from None
        if len(selected) > limit:
            raise ControlChangeRejected(
                f"{len(selected)} actions were selected; at most {limit} can be changed in one request."
            )
    with transaction.atomic():
        rows = Action.objects.filter(status__in=eligible)
        if selected is not None:
            rows = rows.filter(pk__in=selected)
        # Lock the rows (PostgreSQL) so a daemon's SKIP LOCKED claim passes them by while they
        # change; on SQLite the IMMEDIATE transaction already holds the write lock.
        found = list(rows.select_for_update().order_by("id").values_list("pk", "status", "attempts")[:limit])
        ids = [pk for pk, _, _ in found]
        if ids:
            updated = Action.objects.filter(pk__in=ids, status__in=eligible).update(**fields, updated_at=Now())
            if updated != len(ids):  # cannot happen while the rows are locked; refuse rather than half-log
                raise ControlChangeRejected("The actions changed while being updated; nothing was done. Try again.")
            new_status = fields.get("status")
            log_write_many(
                log_entry(
                    action_id=pk,
                    message=(
                        f"{verb} by {actor}"
                        + (f": {status} → {new_status}" if new_status else f" (status {status})")
                        + (f", attempts {attempts} → {fields['attempts']}" if "attempts" in fields else "")
                        + f"; reason: {reason}"
                    ),
                    actor=actor,
                )
                for pk, status, attempts in found
            )
        audit_write(
            actor=actor,
            verb=verb,
            outcome=AuditOutcome.DONE if ids else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=describe_ids(ids),
            before={"ids": ids, "statuses": dict(Counter(status for _, status, _ in found))},
            after=after,
        )
    logger.info("operator verb=%r actor=%s actions=%s reason=%r", verb, actor, len(ids), reason)
    return ids


def action_retry_dlq(
    *, action_ids: Iterable[int] | None = None, actor: str, reason: str, limit: int = MAX_BULK_ACTIONS
) -> list[int]:
    """Send dead-lettered (or NEEDS_REVIEW) actions back to PENDING with attempts reset, due now.

    ``action_ids`` None means every such action, oldest first, up to ``limit``. Ids in any other
    status are left alone. Returns the ids changed.
    """
    return _operator_update(
        verb="retry DLQ",
        eligible=ATTENTION_STATUSES,
        action_ids=action_ids,
        actor=actor,
        reason=reason,
        limit=limit,
        fields={"status": ActionStatus.PENDING, "attempts": 0, "not_before": Now(), "last_error": ""},
        after={"status": ActionStatus.PENDING, "attempts": 0},
    )


def action_discard_dlq(
    *, action_ids: Iterable[int] | None = None, actor: str, reason: str, limit: int = MAX_BULK_ACTIONS
) -> list[int]:
    """Give dead-lettered (or NEEDS_REVIEW) actions up → FAILED (terminal). Rows are never deleted."""
    return _operator_update(
        verb="discard DLQ",
        eligible=ATTENTION_STATUSES,
        action_ids=action_ids,
        actor=actor,
        reason=reason,
        limit=limit,
        fields={"status": ActionStatus.FAILED},
        after={"status": ActionStatus.FAILED},
    )


def action_requeue_now(
    *, action_ids: Iterable[int] | None = None, actor: str, reason: str, limit: int = MAX_BULK_ACTIONS
) -> list[int]:
    """Make waiting actions (PENDING, READY, RETRY) due now instead of at their not_before time."""
    return _operator_update(
        verb="requeue now",
        eligible=DUE_STATUSES,
        action_ids=action_ids,
        actor=actor,
        reason=reason,
        limit=limit,
        fields={"not_before": Now()},
        after={"not_before": "now"},
    )


def action_enqueue_by_operator(
    *,
    action_type: str,
    payload: Any,
    idempotency_key: str | None = None,
    not_before: datetime | None = None,
    actor: str,
    reason: str,
) -> tuple[Action, bool]:
    """``action_enqueue`` for a person: also logs and audits who queued it and why.

    Raises what ``action_enqueue`` raises (nothing is written then), and ControlChangeRejected
    when the reason is missing.
    """
    reason = operator_reason_clean(reason=reason, actor=actor, verb="enqueue an action")
    with transaction.atomic():
        action, created = action_enqueue(
            action_type=action_type, payload=payload, idempotency_key=idempotency_key, not_before=not_before
        )
        if created:
            log_write(action_id=action.pk, message=f"enqueued by {actor}; reason: {reason}", actor=actor)
        audit_write(
            actor=actor,
            verb="enqueue",
            outcome=AuditOutcome.DONE if created else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=f"action #{action.pk} ({action.action_type})",
            before={} if created else {"status": action.status},
            after={"status": action.status, "idempotency_key": action.idempotency_key},
        )
    return action, created
