"""The action queue: enqueue, claim, complete, retry, dead-letter, recover.

Delivery is at least once: an attempt is counted when an action is claimed, so an action whose
adapter crashes the process is still retired to the DLQ after AOL_MAX_ATTEMPTS claims. Every
write made on behalf of a daemon is fenced on its lease token (see services/lease.py).
"""

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, Value, When
from django.db.models.expressions import DatabaseDefault
from django.utils import timezone

from orchestration.adapters import ActionAdapter, adapter_get
from orchestration.conf import action_type_settings, aol, approval_required_types
from orchestration.dbclock import DbNow, db_now
from orchestration.exceptions import (
    IdempotencyConflict,
    InvalidAction,
    InvalidIdempotencyKey,
    InvalidNotBefore,
    InvalidPayload,
    InvalidPriority,
    LeaseNotHeld,
    UnknownActionType,
)
from orchestration.models import (
    DUE_STATUSES,
    FIRST_ATTEMPT_STATUSES,
    MAX_PRIORITY,
    MIN_PRIORITY,
    OPEN_STATUSES,
    Action,
    ActionStatus,
    ActionTypePause,
    AuditOutcome,
    ClaimedMode,
    LogLevel,
    RateLimit,
)
from orchestration.services.audit import audit_write, describe_ids
from orchestration.services.control import operator_reason_clean
from orchestration.services.lease import lease_is_current
from orchestration.services.logs import log_entry, log_write, log_write_many
from orchestration.services.rate_limits import RateDecision, rate_limit_decide, rate_limits_for

logger = logging.getLogger("orchestration")

MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_PAYLOAD_DEPTH = 20
MAX_ERROR_LENGTH = 2000


# --- Enqueue ----------------------------------------------------------------------------------

#: How often an enqueue tries again after losing a race on an idempotency key to another writer.
_RACE_RETRIES = 3


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
    if _has_nul(payload):
        # PostgreSQL's jsonb cannot store it; refused on every database so both behave alike.
        raise InvalidPayload("Payload contains a NUL character (\\u0000) in a key or a text value.")
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


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(child) for key, child in value.items())
    if isinstance(value, list):
        return any(_has_nul(child) for child in value)
    return False


def _check_key(key: str | None, action_type: str) -> str:
    if key is None:
        return f"{action_type.lower()}-{uuid.uuid4().hex}"
    if not isinstance(key, str) or not key.strip():
        raise InvalidIdempotencyKey("The idempotency key must be a non-empty string.")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidIdempotencyKey(
            f"The idempotency key is {len(key)} characters; the limit is {MAX_IDEMPOTENCY_KEY_LENGTH}."
        )
    if not key.isprintable():
        raise InvalidIdempotencyKey("The idempotency key must not contain control characters.")
    return key


def action_priority_clean(*, priority: Any) -> int:
    """``priority`` if it is a whole number in range; InvalidPriority otherwise."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidPriority(
            f"Priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY} (higher runs first), "
            f"got {priority!r}."
        )
    return priority


def action_fields_clean(
    *,
    action_type: str,
    payload: Any,
    idempotency_key: str | None = None,
    not_before: datetime | None = None,
    priority: int = 0,
    requires_approval: bool = False,
) -> dict[str, Any]:
    """The fields of a new action, checked and normalised; InvalidAction (its ``field`` names the input) if not.

    The one validation of every way in: ``action_enqueue``, ``action_enqueue_many`` (per item),
    schedules, the console's form and ``aol_enqueue``. Without a key, a new random one is made;
    without ``not_before`` the action is due when it is written. Writes nothing.
    """
    adapter, payload = action_payload_validate(action_type=action_type, payload=payload)
    key = _check_key(idempotency_key, action_type)
    if not_before is not None and (not isinstance(not_before, datetime) or timezone.is_naive(not_before)):
        raise InvalidNotBefore(
            "not_before must be a datetime that includes a timezone (for example 2026-11-21T12:00:00Z)."
        )
    priority = action_priority_clean(priority=priority)
    if not isinstance(requires_approval, bool):
        raise InvalidAction(
            f"requires_approval must be true or false, got {requires_approval!r}.", field="requires_approval"
        )
    if requires_approval and not adapter.supports_approval:
        raise InvalidAction(
            f"{action_type} actions cannot require approval: the adapter cannot re-render its PROOF artifact, "
            "so an approval could not be bound to what it sends.",
            field="requires_approval",
        )
    fields: dict[str, Any] = {
        "idempotency_key": key,
        "action_type": action_type,
        "payload": payload,
        "priority": priority,
        "requires_approval": requires_approval,
    }
    if not_before is not None:
        fields["not_before"] = not_before
    return fields


def action_enqueue(
    *,
    action_type: str,
    payload: Any,
    idempotency_key: str | None = None,
    not_before: datetime | None = None,
    priority: int = 0,
    requires_approval: bool = False,
) -> tuple[Action, bool]:
    """Validate (``action_fields_clean``) and queue an action; returns ``(action, created)``.

    The same key with the same type, payload and approval requirement returns the existing action
    (``created`` False; its priority is left as it is); the same key with anything else raises
    IdempotencyConflict. ``requires_approval`` gates this action's REAL run behind a person's
    approval even if its type is not gated (AOL_APPROVAL_REQUIRED_TYPES). Nothing is written on error.
    """
    fields = action_fields_clean(
        action_type=action_type,
        payload=payload,
        idempotency_key=idempotency_key,
        not_before=not_before,
        priority=priority,
        requires_approval=requires_approval,
    )
    key, payload, priority = fields["idempotency_key"], fields["payload"], fields["priority"]
    for _ in range(_RACE_RETRIES):
        action = Action(**fields)
        if connection.in_atomic_block:
            # A savepoint, so that a database error in the INSERT (PostgreSQL refuses a \u0000
            # escape in jsonb, for one) leaves the caller's transaction usable.
            with transaction.atomic():
                created = _insert_unless_key_taken(action)
        else:
            # Autocommit: the INSERT commits on its own, in one round trip.
            created = _insert_unless_key_taken(action)
        if created:
            logger.info("action enqueued id=%s type=%s key=%s priority=%s", action.pk, action_type, key, priority)
            return action, True
        existing = Action.objects.filter(idempotency_key=key).first()
        if existing is None:
            continue  # the holder of the key was deleted (pruned) in between: try the INSERT again
        if existing.action_type != action_type or existing.payload != payload:
            raise IdempotencyConflict(
                f"Idempotency key {key!r} is already used by action #{existing.pk} ({existing.action_type}) "
                "with a different payload; send the same payload to get that action back, or use a new key."
            )
        if existing.requires_approval != requires_approval:
            raise IdempotencyConflict(
                f"Idempotency key {key!r} is already used by action #{existing.pk}, which "
                f"{'requires' if existing.requires_approval else 'does not require'} approval; use a new key."
            )
        return existing, False
    raise IdempotencyConflict(
        f"Idempotency key {key!r} was taken and released {_RACE_RETRIES} times while this enqueue ran; try again."
    )


def _insert_unless_key_taken(action: Action) -> bool:
    """INSERT ``action`` unless its idempotency key is taken; True (and its pk set) if it was inserted.

    One statement on PostgreSQL and SQLite (3.35+): INSERT … ON CONFLICT (idempotency_key) DO
    NOTHING RETURNING. A taken key is not an error, so it needs no transaction of its own to
    recover from; the ORM's create() has no such clause, and bulk_create(ignore_conflicts=True)
    does not return the new id. Values are prepared by each field as the ORM's INSERT prepares them.
    """
    db = connections[DEFAULT_DB_ALIAS]  # the connection itself: the proxy costs a look-up per attribute
    meta = Action._meta
    columns, params, returning = [], [], [meta.pk]
    for model_field in meta.concrete_fields:
        if model_field.primary_key:
            continue
        value = model_field.pre_save(action, add=True)
        if isinstance(value, DatabaseDefault):
            returning.append(model_field)  # left to the database (not_before: its clock); read back below
            continue
        columns.append(model_field.column)
        params.append(model_field.get_db_prep_save(value, db))
    sql = _insert_unless_key_taken_sql(db.vendor, tuple(columns), tuple(f.column for f in returning))
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    for model_field, value in zip(returning, row, strict=True):
        column = model_field.get_col(meta.db_table)
        for converter in [*db.ops.get_db_converters(column), *model_field.get_db_converters(db)]:
            value = converter(value, column, db)
        setattr(action, model_field.attname, value)
    action._state.adding, action._state.db = False, db.alias
    return True


@cache
def _insert_unless_key_taken_sql(vendor: str, columns: tuple[str, ...], returning: tuple[str, ...]) -> str:
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return (
        f"INSERT INTO {quote(Action._meta.db_table)} ({', '.join(map(quote, columns))})"
        f" VALUES ({', '.join(['%s'] * len(columns))})"
        f" ON CONFLICT ({quote(Action._meta.get_field('idempotency_key').column)}) DO NOTHING"
        f" RETURNING {', '.join(map(quote, returning))}"
    )


# --- Claim and complete (daemon side, fenced on the lease token) --------------------------------


#: How many rate-limited actions one claim may defer before it gives up for this call (the next
#: tick goes on), so a long queue of over-limit actions cannot hold the claim's transaction long.
MAX_DEFERRALS_PER_CLAIM = 50


def action_claim_due(*, owner: str, token: int, limit: int, proof: bool | None = None) -> list[Action]:
    """Mark up to ``limit`` due actions RUNNING under ``token``: highest priority first, then oldest due.

    The claim is one short transaction; the work happens after it commits. On PostgreSQL the
    rows are locked with SKIP LOCKED so two claimers never get the same row and never wait on
    each other; SQLite has no row locks, but the IMMEDIATE transaction serialises writers.
    ``proof`` records the mode the attempt runs in (None: unknown), which recovery needs to
    decide whether an attempt with an unknown outcome may be retried.

    Flow control (docs/flow-control.md), decided here so that it holds across restarts: actions
    of a paused type are passed over; in REAL mode an action gated by approval and not yet
    approved is claimed in PROOF, to make the artifact a person approves; an action over a rate
    limit is deferred (``not_before`` moved, ``deferred_note`` set) instead of claimed. Without
    pauses, gates or limits in play the claim is still one SELECT and one UPDATE. An action whose
    attempts already reach its type's limit (a row written around the services, or a limit lowered
    since its last attempt) is moved to the DLQ without running.

    Batches (``limit`` > 1) take only actions that a crash cannot harm by being claimed beside
    others (``action_batchable``): first attempts whose outcome recovery would simply retry. An
    action that is not batchable is claimed alone, and ends the batch before it. Batch-claimed
    rows are marked ``claimed_in_batch``, so recovery does not count their attempt.
    """
    daemon_mode = "" if proof is None else ClaimedMode.PROOF if proof else ClaimedMode.REAL
    max_attempts = cache(lambda action_type: action_type_settings(action_type).max_attempts)  # per type, per claim
    claimed: list[Action] = []
    deferrals = 0
    with transaction.atomic():
        while len(claimed) < limit:
            due = (
                Action.objects.due()
                .exclude(action_type__in=ActionTypePause.objects.values("action_type"))
                .annotate(has_db_limits=Exists(RateLimit.objects.filter(action_type=OuterRef("action_type"))))
            )
            if claimed:
                due = due.exclude(pk__in=[a.pk for a in claimed])
            if connection.features.has_select_for_update_skip_locked:
                due = due.select_for_update(skip_locked=True)
            rows = list(due[: limit - len(claimed)])
            if not rows:
                break
            plain: list[Action] = []
            passed_over = 0
            alone = False  # an action that must not share its claim was taken: the batch ends with it
            for action in rows:
                if action.cancel_requested:
                    # Cancelled while its last attempt was being recorded: it does not run again.
                    _cancel_unclaimed(action=action, token=token, actor=owner)
                    passed_over += 1
                    continue
                if action.attempts >= (allowed := max_attempts(action.action_type)):
                    _dead_letter_unclaimed(action=action, max_attempts=allowed, token=token, actor=owner)
                    passed_over += 1
                    continue
                mode = action_claim_mode(action=action, daemon_mode=daemon_mode)
                if limit > 1 and not action_batchable(action=action, mode=mode):
                    if claimed or plain:
                        break  # it will be claimed on its own by the next claim
                    alone = True
                gated = mode == ClaimedMode.PROOF and daemon_mode == ClaimedMode.REAL
                limits = (
                    [] if gated else rate_limits_for(action_type=action.action_type, db_defined=action.has_db_limits)
                )
                if not limits:
                    action.claimed_mode = mode
                    plain.append(action)
                    if alone:
                        break
                    continue
                decision = rate_limit_decide(action=action, limits=limits, now=db_now())
                if decision.defer_until is not None:
                    _defer(action=action, decision=decision, token=token, actor=owner)
                    passed_over += 1
                    alone = False
                    continue
                # Claimed at once, so that the next action of the same key counts this one.
                _claim_rows(
                    [action], owner=owner, token=token, mode=mode, batch=limit > 1 and not alone, rate_key=decision.key
                )
                claimed.append(action)
                if alone:
                    break
            for mode in sorted({action.claimed_mode for action in plain}):
                batch = [a for a in plain if a.claimed_mode == mode]
                _claim_rows(batch, owner=owner, token=token, mode=mode, batch=limit > 1 and not alone)
            claimed.extend(plain)
            deferrals += passed_over
            if alone or not passed_over or deferrals >= MAX_DEFERRALS_PER_CLAIM:
                break
    return claimed


def action_batchable(*, action: Action, mode: str) -> bool:
    """May ``action`` be claimed together with others, in ``mode``?

    Only if a crash of its daemon cannot harm it: recovery returns a batch-claimed action to the
    queue with its attempt uncounted, because it may not have started. That is right only for a
    first attempt (PENDING or READY: never failed, never recovered) whose unknown outcome recovery
    would retry anyway (PROOF, or an idempotent REAL adapter). A retry runs on its own, so an action
    that crashes its daemon is soon isolated and counts its own attempts towards the DLQ.
    """
    return action.status in FIRST_ATTEMPT_STATUSES and (
        action_outcome_unknown_policy(action_type=action.action_type, claimed_mode=mode) == ActionStatus.RETRY
    )


def _claim_rows(
    actions: list[Action], *, owner: str, token: int, mode: str, batch: bool, rate_key: str | None = None
) -> None:
    fields: dict[str, Any] = {
        "status": ActionStatus.RUNNING,
        "attempts": F("attempts") + 1,
        "claimed_by": owner,
        "lease_token": token,
        "claimed_mode": mode,
        "claimed_in_batch": batch,
        "deferred_note": "",
        "updated_at": DbNow(),
    }
    if rate_key is not None:
        fields.update(rate_key=rate_key, rate_counted_at=DbNow())
    claimed = (
        Action.objects.filter(pk__in=[a.pk for a in actions]).filter(lease_is_current(token=token)).update(**fields)
    )
    if claimed != len(actions):
        raise LeaseNotHeld(f"lease token {token} is no longer current; claimed nothing")
    for action in actions:
        action.status = ActionStatus.RUNNING
        action.attempts += 1
        action.claimed_by = owner
        action.lease_token = token
        action.claimed_mode = mode
        action.claimed_in_batch = batch
        if rate_key is not None:
            action.rate_key = rate_key


def _defer(*, action: Action, decision: RateDecision, token: int, actor: str) -> None:
    """Push a rate-limited action back to its next allowed time (fenced; its attempt is not counted)."""
    deferred = (
        Action.objects.filter(pk=action.pk, status__in=DUE_STATUSES)
        .filter(lease_is_current(token=token))
        .update(
            not_before=decision.defer_until,
            deferred_note=decision.note[:500],
            rate_key=decision.key,
            rate_counted_at=None,
            updated_at=DbNow(),
        )
    )
    if not deferred:
        raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not deferred")
    log_write(action_id=action.pk, message=decision.note, actor=actor)
    logger.info(
        "action id=%s type=%s deferred until=%s key=%s",
        action.pk,
        action.action_type,
        decision.defer_until,
        decision.key,
    )


def _dead_letter_unclaimed(*, action: Action, max_attempts: int, token: int, actor: str) -> None:
    """Retire a due action whose attempts already reach its limit, without running it (fenced)."""
    error = (
        f"not run: its {action.attempts} attempts already reach the limit of {max_attempts} "
        f"for {action.action_type}; moved to DLQ"
    )
    if not (
        Action.objects.filter(pk=action.pk, status__in=DUE_STATUSES)
        .filter(lease_is_current(token=token))
        .update(status=ActionStatus.DLQ, last_error=error, updated_at=DbNow())
    ):
        raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not dead-lettered")
    log_write(action_id=action.pk, level=LogLevel.ERROR, message=error, actor=actor)
    logger.warning(
        "action id=%s type=%s status=%s attempts=%s", action.pk, action.action_type, ActionStatus.DLQ, action.attempts
    )


def _cancel_unclaimed(*, action: Action, token: int, actor: str) -> None:
    if not (
        Action.objects.filter(pk=action.pk, status__in=DUE_STATUSES)
        .filter(lease_is_current(token=token))
        .update(status=ActionStatus.CANCELLED, updated_at=DbNow())
    ):
        raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not cancelled")
    log_write(
        action_id=action.pk,
        level=LogLevel.WARNING,
        message="cancelled as an operator asked while its last attempt ended; not run again",
        actor=actor,
    )


def action_approval_gated(*, action: Action) -> bool:
    """Does ``action``'s REAL run wait for a person's approval of its PROOF artifact?

    Gated: the action asked for it, or its type is in AOL_APPROVAL_REQUIRED_TYPES, and its adapter
    has a REAL integration at all (one without refuses REAL anyway; nobody is asked to approve it).
    """
    if not (action.requires_approval or action.action_type in approval_required_types()):
        return False
    try:
        return adapter_get(action.action_type).supports_real
    except UnknownActionType:
        return False


def action_claim_mode(*, action: Action, daemon_mode: str) -> str:
    """The mode ``action``'s attempt runs in: the daemon's, except that in REAL mode a gated action
    that has not been approved runs in PROOF (to make the artifact a person approves)."""
    if daemon_mode == ClaimedMode.REAL and action.approved_at is None and action_approval_gated(action=action):
        return ClaimedMode.PROOF
    return daemon_mode


def _fenced(action: Action, token: int):
    return _fenced_many([action.pk], token)


def _fenced_many(pks: list[int], token: int):
    """These actions, only while RUNNING under ``token`` and while ``token`` is the lease's token."""
    return Action.objects.filter(pk__in=pks, status=ActionStatus.RUNNING, lease_token=token).filter(
        lease_is_current(token=token)
    )


def _back_in_queue_uncounted() -> dict[str, Any]:
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


def action_mark_success(
    *, action: Action, token: int, actor: str, message: str, artifact_ref: str = "", artifact_sha256: str = ""
) -> None:
    """Record success and its execution log in one transaction; LeaseNotHeld if fenced out."""
    action_mark_success_many(
        successes=[Success(action, message, artifact_ref, artifact_sha256)], token=token, actor=actor
    )


def action_mark_success_many(*, successes: list[Success], token: int, actor: str) -> None:
    """Record several successes and their execution logs in one transaction (one UPDATE, one INSERT).

    All or nothing: if any of them is no longer RUNNING under ``token``, or the token is no
    longer current, nothing is recorded and LeaseNotHeld is raised; the actions stay RUNNING for
    the next lease holder's recovery to return to the queue.
    """
    if not successes:
        return
    ids = [success.action.pk for success in successes]
    with transaction.atomic():
        recorded = _fenced_many(ids, token).update(status=ActionStatus.SUCCESS, last_error="", updated_at=DbNow())
        if recorded != len(set(ids)):
            which = f"action #{ids[0]}" if len(ids) == 1 else f"{len(ids)} actions (#{ids[0]}..#{ids[-1]})"
            raise LeaseNotHeld(f"{which}: lease token {token} is no longer current; result not recorded")
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


def action_mark_failure(*, action: Action, token: int, actor: str, error: str, permanent: bool) -> str:
    """Retry with backoff, or dead-letter when the error is permanent or attempts are used up.

    Returns the new status. The attempt limit and the backoff come from the action type's settings
    (AOL_ACTION_TYPES); by default AOL_MAX_ATTEMPTS, and a backoff that grows by
    AOL_RETRY_BACKOFF_SECONDS per attempt made.
    """
    error = error[:MAX_ERROR_LENGTH]
    settings = action_type_settings(action.action_type)
    fields: dict[str, Any] = {"last_error": error, "updated_at": DbNow()}
    if permanent or action.attempts >= settings.max_attempts:
        fields["status"] = ActionStatus.DLQ
        why = "permanent error" if permanent else f"attempt {action.attempts} of {settings.max_attempts} failed"
        message, level = f"moved to DLQ ({why}): {error}", LogLevel.ERROR
    else:
        backoff = timedelta(seconds=round(settings.backoff_for(attempts=action.attempts), 3))
        fields["status"] = ActionStatus.RETRY
        fields["not_before"] = DbNow() + Value(backoff)
        message = (
            f"attempt {action.attempts} of {settings.max_attempts} failed, "
            f"retrying in {backoff.total_seconds():g}s: {error}"
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
        if not _fenced(action, token).update(**_back_in_queue_uncounted(), not_before=DbNow()):
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
        if not _fenced(action, token).update(status=ActionStatus.NEEDS_REVIEW, last_error=error, updated_at=DbNow()):
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
    return ActionStatus.RETRY if adapter.is_idempotent else ActionStatus.NEEDS_REVIEW


def action_release_unstarted(*, actions: list[Action], token: int) -> int:
    """Give claimed-but-unstarted actions back to the queue, uncounting their attempt."""
    if not actions:
        return 0
    return _fenced_many([a.pk for a in actions], token).update(**_back_in_queue_uncounted())


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
                "pk", "attempts", "claimed_by", "action_type", "claimed_mode", "cancel_requested", "claimed_in_batch"
            )
        )
        if not orphans:
            return RecoveryReport(retried=[], dead=[], review=[], cancelled=[])
        review = [
            pk
            for pk, _, _, action_type, mode, *_ in orphans
            if action_outcome_unknown_policy(action_type=action_type, claimed_mode=mode) == ActionStatus.NEEDS_REVIEW
        ]
        # An operator asked it to stop: it is not run again (unless its outcome needs a person).
        cancelled = [pk for pk, *_, cancel, _ in orphans if cancel and pk not in review]
        rest = [row for row in orphans if row[0] not in review and row[0] not in cancelled]
        uncounted = [pk for pk, *_, in_batch in rest if in_batch]
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


def action_enqueue_by_operator(
    *,
    action_type: str,
    payload: Any,
    idempotency_key: str | None = None,
    not_before: datetime | None = None,
    priority: int = 0,
    requires_approval: bool = False,
    actor: str,
    reason: str,
) -> tuple[Action, bool]:
    """``action_enqueue`` for a person (the console, ``aol_enqueue``): also logs and audits who queued it and why.

    Raises what ``action_enqueue`` raises (nothing is written then), and ControlChangeRejected
    when the reason is missing.
    """
    reason = operator_reason_clean(reason=reason, actor=actor, verb="enqueue an action")
    with transaction.atomic():
        action, created = action_enqueue(
            action_type=action_type,
            payload=payload,
            idempotency_key=idempotency_key,
            not_before=not_before,
            priority=priority,
            requires_approval=requires_approval,
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
            after={
                "status": action.status,
                "idempotency_key": action.idempotency_key,
                **({"priority": action.priority} if action.priority else {}),
                **({"requires_approval": True} if action.requires_approval else {}),
            },
        )
    return action, created


def action_enqueue_many_by_operator(
    *, items: Iterable[dict[str, Any]], actor: str, reason: str, source: str = ""
) -> "EnqueueManyReport":
    """``action_enqueue_many`` for a person (``aol_enqueue --from-file``), audited in one row with who and why.

    One audit row for the whole call (counts, the new ids, ``source`` such as the file name), not
    one execution-log row per action: a file of 100,000 lines stays one bulk INSERT. Raises what
    ``action_enqueue_many`` raises (nothing is written then), and ControlChangeRejected when the
    reason is missing.
    """
    reason = operator_reason_clean(reason=reason, actor=actor, verb="enqueue actions")
    with transaction.atomic():
        report = action_enqueue_many(items=items)
        audit_write(
            actor=actor,
            verb="enqueue",
            outcome=AuditOutcome.DONE if report.created else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=describe_ids(report.created),
            after={
                "created": len(report.created),
                "existing": len(report.existing),
                "conflicts": len(report.conflicts),
                **({"source": source} if source else {}),
            },
        )
    return report


# --- Flow control, daemon side (docs/flow-control.md) --------------------------------------------------


def action_mark_awaiting_approval(
    *, action: Action, token: int, actor: str, artifact_ref: str, artifact_sha256: str
) -> None:
    """Park a gated action after its PROOF run: its artifact and SHA-256 wait for a person (fenced)."""
    with transaction.atomic():
        if not _fenced(action, token).update(
            status=ActionStatus.AWAITING_APPROVAL,
            approval_artifact_ref=artifact_ref,
            approval_sha256=artifact_sha256,
            last_error="",
            updated_at=DbNow(),
        ):
            raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not parked")
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
            not _fenced(action, token)
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


# --- Bulk enqueue ----------------------------------------------------------------------------

ENQUEUE_MANY_FIELDS = frozenset(
    {"action_type", "payload", "idempotency_key", "not_before", "priority", "requires_approval"}
)
_INSERT_BATCH_SIZE = 5000


@dataclass(frozen=True)
class EnqueueConflict:
    """An item whose key is already used by an action with another type or payload: not written."""

    item: int  # 1-based position in the input
    idempotency_key: str
    action_id: int


@dataclass(frozen=True)
class EnqueueManyReport:
    created: list[int]  # ids of the new actions, in input order
    existing: list[int]  # ids of actions that already had the key with the same type and payload
    conflicts: list[EnqueueConflict]


def _enqueue_item_fields(number: int, item: Any) -> dict[str, Any]:
    """Validate one bulk item with ``action_fields_clean``; the error names the item (``items``)."""
    key = item.get("idempotency_key") if isinstance(item, dict) else None
    try:
        if not isinstance(item, dict):
            raise InvalidPayload(
                f"must be an object with action_type and payload, not {type(item).__name__}.", field=None
            )
        unknown = sorted(set(item) - ENQUEUE_MANY_FIELDS)
        if unknown:
            allowed = ", ".join(sorted(ENQUEUE_MANY_FIELDS))
            raise InvalidPayload(f"unknown field(s) {', '.join(map(repr, unknown))} (allowed: {allowed}).", field=None)
        if "action_type" not in item or "payload" not in item:
            raise InvalidPayload("action_type and payload are required.", field=None)
        return action_fields_clean(**item)
    except InvalidAction as exc:
        raise type(exc)(exc.detail, field=exc.field, items=(number,), idempotency_key=key) from None


def action_enqueue_many(*, items: Iterable[dict[str, Any]]) -> EnqueueManyReport:
    """Validate and queue many actions in one transaction; returns what was created, found, refused.

    Each item is ``{"action_type", "payload", "idempotency_key"?, "not_before"?, "priority"?,
    "requires_approval"?}`` and is checked like ``action_enqueue`` (``action_fields_clean``). Any
    invalid item (or one key given twice with different contents) raises InvalidAction whose
    ``items`` name the item(s), and nothing is written. A key already held by an action with the
    same type, payload and approval requirement is reported as existing; with anything else, as a
    conflict (that item is not written; the others are). Without ``not_before`` an action is due from the
    time of this call by the database's clock (the instant of its ``created_at``).
    """
    rows = [_enqueue_item_fields(number, item) for number, item in enumerate(items, start=1)]
    first_by_key: dict[str, int] = {}
    for index, fields in enumerate(rows):
        key = fields["idempotency_key"]
        if key not in first_by_key:
            first_by_key[key] = index
            continue
        if _identity(rows[first_by_key[key]]) != _identity(fields):
            raise IdempotencyConflict(
                f"both use the idempotency key {key!r} with different contents; give each action its own key.",
                items=(first_by_key[key] + 1, index + 1),
            )
    ids: dict[str, int] = {}  # key -> id of the action this call created
    found: dict[str, tuple[int, tuple]] = {}  # key -> (id, _identity) of an action that had it
    with transaction.atomic():
        todo = [rows[index] for index in first_by_key.values()]
        for _ in range(_RACE_RETRIES):
            now = db_now()
            for start in range(0, len(todo), _INSERT_BATCH_SIZE):
                ids.update(_insert_many_unless_keys_taken(todo[start : start + _INSERT_BATCH_SIZE], now=now))
            found.update(
                _actions_holding_keys([row["idempotency_key"] for row in todo if row["idempotency_key"] not in ids])
            )
            # A key skipped by the INSERT whose holder is gone by the look-up was deleted in between: again.
            todo = [row for row in todo if row["idempotency_key"] not in ids and row["idempotency_key"] not in found]
            if not todo:
                break
        else:
            raise IdempotencyConflict(
                f"Idempotency key {todo[0]['idempotency_key']!r} was taken and released {_RACE_RETRIES} times "
                "while this enqueue ran; nothing was written, try again."
            )
    created, existing, conflicts = [], [], []
    for index, fields in enumerate(rows):
        key = fields["idempotency_key"]
        if key in ids:
            (created if first_by_key[key] == index else existing).append(ids[key])
            continue
        pk, identity = found[key]
        if identity == _identity(fields):
            existing.append(pk)
        else:
            conflicts.append(EnqueueConflict(item=index + 1, idempotency_key=key, action_id=pk))
    report = EnqueueManyReport(created=created, existing=existing, conflicts=conflicts)
    logger.info(
        "actions enqueued in bulk created=%s existing=%s conflicts=%s",
        len(report.created),
        len(report.existing),
        len(report.conflicts),
    )
    return report


def _identity(fields: dict[str, Any]) -> tuple:
    """What two enqueues of one key must share to be the same action (as in ``action_enqueue``)."""
    return fields["action_type"], fields["payload"], fields["requires_approval"]


def _actions_holding_keys(keys: list[str]) -> dict[str, tuple[int, tuple]]:
    """``{key: (id, _identity)}`` of the actions holding any of ``keys``."""
    found = {}
    # All keys in one look-up on PostgreSQL; within SQLite's limit on parameters there.
    per_lookup = max(1, connection.ops.bulk_batch_size(["idempotency_key"], keys))
    for start in range(0, len(keys), per_lookup):
        for pk, key, *identity in Action.objects.filter(
            idempotency_key__in=keys[start : start + per_lookup]
        ).values_list("pk", "idempotency_key", "action_type", "payload", "requires_approval"):
            found[key] = (pk, tuple(identity))
    return found


#: How each database unpacks the batch's JSON document (one parameter) into rows, in input order:
#: the FROM clause, how a row reads an item's key, type, payload, priority, approval and not_before, and
#: how a parameter for a column default is written.
_ROWS_FROM_JSON: dict[str, dict[str, str]] = {
    "postgresql": {
        "from": "jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(item, n) ORDER BY e.n",
        "k": "e.item->>'k'",
        "t": "e.item->>'t'",
        "p": "e.item->'p'",
        "nb": "(e.item->>'nb')::timestamptz",
        "pr": "(e.item->>'pr')::smallint",
        "ra": "(e.item->>'ra')::boolean",
        # A bare parameter in a SELECT list is typed text (a NULL too), so it is cast to its column's type.
        "param": "CAST(%s AS {type})",
    },
    "sqlite": {
        # WHERE true: SQLite's parser needs it to read the ON CONFLICT that follows as the upsert clause.
        "from": "json_each(%s) WHERE true ORDER BY key",
        "k": "json_extract(value, '$.k')",
        "t": "json_extract(value, '$.t')",
        "p": "json_extract(value, '$.p')",
        "nb": "json_extract(value, '$.nb')",
        "pr": "json_extract(value, '$.pr')",
        "ra": "json_extract(value, '$.ra')",
        "param": "%s",
    },
}
#: Which item field fills which column; every other column gets the model's default.
_ITEM_COLUMNS = {
    "idempotency_key": "k",
    "action_type": "t",
    "payload": "p",
    "priority": "pr",
    "requires_approval": "ra",
}


def _insert_many_unless_keys_taken(rows: list[dict[str, Any]], *, now: datetime) -> dict[str, int]:
    """INSERT ``rows`` in one statement, skipping keys already taken; ``{key: id}`` of the rows inserted.

    The rows travel as one JSON document that the database unpacks (INSERT … SELECT … FROM
    jsonb_array_elements / json_each … ON CONFLICT (idempotency_key) DO NOTHING RETURNING): one
    parameter instead of one per column and row, which both drivers would quote value by value,
    and no error when another writer holds a key, so the caller looks that one up instead of
    retrying the batch. Ids follow input order. Column defaults are prepared once per batch, as
    the ORM prepares them.
    """
    db = connections[DEFAULT_DB_ALIAS]
    read = _ROWS_FROM_JSON[db.vendor]
    adapt = db.ops.adapt_datetimefield_value
    columns, values, params = [], [], []
    for model_field in Action._meta.concrete_fields:
        if model_field.primary_key:
            continue
        if model_field.attname in _ITEM_COLUMNS:
            value_sql = read[_ITEM_COLUMNS[model_field.attname]]
        elif model_field.attname == "not_before":
            value_sql = f"COALESCE({read['nb']}, {read['param'].format(type=model_field.cast_db_type(db))})"
            params.append(model_field.get_db_prep_save(now, db))
        else:
            auto = getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False)
            default = now if auto else model_field.get_default()
            if isinstance(default, DatabaseDefault):
                continue  # left to the database
            value_sql = read["param"].format(type=model_field.cast_db_type(db))
            params.append(model_field.get_db_prep_save(default, db))
        columns.append(db.ops.quote_name(model_field.column))
        values.append(value_sql)
    document = json.dumps(
        [
            {
                "k": row["idempotency_key"],
                "t": row["action_type"],
                "p": row["payload"],
                "pr": row["priority"],
                "ra": row["requires_approval"],
                **({"nb": str(adapt(row["not_before"]))} if row.get("not_before") is not None else {}),
            }
            for row in rows
        ]
    )
    quote = db.ops.quote_name
    sql = (
        f"INSERT INTO {quote(Action._meta.db_table)} ({', '.join(columns)})"
        f" SELECT {', '.join(values)} FROM {read['from']}"
        f" ON CONFLICT ({quote('idempotency_key')}) DO NOTHING RETURNING {quote('id')}, {quote('idempotency_key')}"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, [*params, document])
        return {key: pk for pk, key in cursor.fetchall()}
