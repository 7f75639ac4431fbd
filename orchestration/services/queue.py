"""The action queue: enqueue, claim, complete, retry, dead-letter, recover.

Delivery is at least once: an attempt is counted when an action is claimed, so an action whose
adapter crashes the process is still retired to the DLQ after AOL_MAX_ATTEMPTS claims. Every
write made on behalf of a daemon is fenced on its lease token (see services/lease.py).
"""

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from orchestration.adapters import adapter_get
from orchestration.conf import aol
from orchestration.exceptions import IdempotencyConflict, InvalidAction, InvalidPayload, LeaseNotHeld
from orchestration.models import Action, ActionStatus, LogLevel
from orchestration.services.lease import lease_is_current
from orchestration.services.logs import log_entry, log_write, log_write_many

logger = logging.getLogger("orchestration")

MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_PAYLOAD_DEPTH = 20
MAX_ERROR_LENGTH = 2000


# --- Enqueue ----------------------------------------------------------------------------------


def action_payload_from_json(*, text: str) -> dict[str, Any]:
    """Parse a payload given as JSON text; InvalidPayload says what is wrong with it."""
    try:
        payload = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise InvalidPayload(f"Payload is not valid JSON: {exc}.") from None
    return payload


def _check_payload_shape(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidPayload(f"Payload must be a JSON object, not {type(payload).__name__}.")
    try:
        encoded = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"Payload cannot be stored as JSON: {exc}.") from None
    except UnicodeEncodeError:
        raise InvalidPayload("Payload contains text that is not valid UTF-8.") from None
    if len(encoded) > aol.max_payload_bytes:
        raise InvalidPayload(
            f"Payload is {len(encoded)} bytes; the limit is {aol.max_payload_bytes} (AOL_MAX_PAYLOAD_BYTES)."
        )
    if _depth(payload) > MAX_PAYLOAD_DEPTH:
        raise InvalidPayload(f"Payload is nested more than {MAX_PAYLOAD_DEPTH} levels deep.")
    return json.loads(encoded)  # normalised: exactly what the database will hand back


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
    adapter = adapter_get(action_type)
    payload = _check_payload_shape(payload)
    adapter.validate(payload)
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


def action_claim_due(*, owner: str, token: int, limit: int) -> list[Action]:
    """Mark up to ``limit`` due actions RUNNING under ``token``, oldest due first.

    The claim is one short transaction; the work happens after it commits. On PostgreSQL the
    rows are locked with SKIP LOCKED so two claimers never get the same row and never wait on
    each other; SQLite has no row locks, but the IMMEDIATE transaction serialises writers.
    """
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


def action_recover_orphans(*, token: int, actor: str) -> RecoveryReport:
    """Return actions left RUNNING under an older lease token to RETRY, or DLQ if out of attempts.

    Their daemon died or was replaced mid-attempt, so the outcome is unknown; the attempt it
    started still counts. Called by a daemon right after it acquires the lease.
    """
    with transaction.atomic():
        orphans = list(Action.objects.orphaned(current_token=token).values_list("pk", "attempts", "claimed_by"))
        if not orphans:
            return RecoveryReport(retried=[], dead=[])
        dead = [pk for pk, attempts, _ in orphans if attempts >= aol.max_attempts]
        retried = [pk for pk, attempts, _ in orphans if attempts < aol.max_attempts]
        base = Action.objects.filter(status=ActionStatus.RUNNING, lease_token__lt=token).filter(
            lease_is_current(token=token)
        )
        error = "worker lost during attempt: its daemon stopped before recording a result"
        if dead:
            base.filter(pk__in=dead).update(status=ActionStatus.DLQ, last_error=error, updated_at=Now())
        if retried:
            base.filter(pk__in=retried).update(
                status=ActionStatus.RETRY, last_error=error, not_before=Now(), updated_at=Now()
            )
        log_write_many(
            log_entry(
                action_id=pk,
                level=LogLevel.ERROR if pk in dead else LogLevel.WARNING,
                message=(
                    f"{error} (attempt {attempts}, claimed by {claimed_by or '?'}); "
                    + ("moved to DLQ: no attempts left" if pk in dead else "returned to the queue as RETRY")
                ),
                actor=actor,
            )
            for pk, attempts, claimed_by in orphans
        )
    logger.warning("recovered orphaned actions retried=%s dead=%s", retried, dead)
    return RecoveryReport(retried=retried, dead=dead)


# --- Operator side ---------------------------------------------------------------------------


def action_log(*, action: Action, message: str, actor: str, level: str = LogLevel.INFO) -> None:
    log_write(action_id=action.pk, level=level, message=message, actor=actor)


# --- Bulk enqueue ----------------------------------------------------------------------------

ENQUEUE_MANY_FIELDS = frozenset({"action_type", "payload", "idempotency_key", "not_before"})
_INSERT_BATCH_SIZE = 5000
_RACE_RETRIES = 3


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
    """Validate one bulk item exactly as action_enqueue would; the error names the item."""
    where = f"Item {number}"
    try:
        if not isinstance(item, dict):
            raise InvalidPayload(f"must be an object with action_type and payload, not {type(item).__name__}.")
        if item.get("idempotency_key") is not None:
            where = f"Item {number} (key {item['idempotency_key']!r})"
        unknown = sorted(set(item) - ENQUEUE_MANY_FIELDS)
        if unknown:
            allowed = ", ".join(sorted(ENQUEUE_MANY_FIELDS))
            raise InvalidPayload(f"unknown field(s) {', '.join(map(repr, unknown))} (allowed: {allowed}).")
        if "action_type" not in item or "payload" not in item:
            raise InvalidPayload("action_type and payload are required.")
        action_type = item["action_type"]
        adapter = adapter_get(action_type)
        payload = _check_payload_shape(item["payload"])
        adapter.validate(payload)
        key = _check_key(item.get("idempotency_key"), action_type)
        not_before = item.get("not_before")
        if not_before is not None and (not isinstance(not_before, datetime) or timezone.is_naive(not_before)):
            raise InvalidPayload("not_before must be a datetime that includes a timezone.")
    except InvalidPayload as exc:
        raise InvalidPayload(f"{where}: {exc}") from None
    except InvalidAction as exc:
        raise type(exc)(f"{where}: {exc}") from None
    fields: dict[str, Any] = {"idempotency_key": key, "action_type": action_type, "payload": payload}
    if not_before is not None:
        fields["not_before"] = not_before
    return fields


def action_enqueue_many(*, items: Iterable[dict[str, Any]]) -> EnqueueManyReport:
    """Validate and queue many actions in one transaction; returns what was created, found, refused.

    Each item is ``{"action_type", "payload", "idempotency_key"?, "not_before"?}`` and is checked
    like ``action_enqueue``. Any invalid item (or one key given twice with different contents)
    raises InvalidAction naming the item, and nothing is written. A key already held by an action
    with the same type and payload is reported as existing; with anything else, as a conflict
    (that item is not written; the others are). Without ``not_before`` an action is due from the
    time of this call by this process's clock (like ``created_at``), not the database's: one
    explicit value in every row lets PostgreSQL insert the whole batch as a single UNNEST.
    """
    rows = [_enqueue_item_fields(number, item) for number, item in enumerate(items, start=1)]
    first_by_key: dict[str, int] = {}
    for index, fields in enumerate(rows):
        key = fields["idempotency_key"]
        if key not in first_by_key:
            first_by_key[key] = index
            continue
        first = rows[first_by_key[key]]
        if (first["action_type"], first["payload"]) != (fields["action_type"], fields["payload"]):
            raise IdempotencyConflict(
                f"Items {first_by_key[key] + 1} and {index + 1} both use the idempotency key {key!r} "
                "with different contents; give each action its own key."
            )
    for attempt in range(1, _RACE_RETRIES + 1):
        try:
            report = _enqueue_many_once(rows, first_by_key)
            break
        except IntegrityError:
            # Another writer inserted one of our keys between our look-up and our insert; the
            # transaction rolled back whole, so look again and classify that row too.
            if attempt == _RACE_RETRIES:
                raise
    logger.info(
        "actions enqueued in bulk created=%s existing=%s conflicts=%s",
        len(report.created),
        len(report.existing),
        len(report.conflicts),
    )
    return report


def _enqueue_many_once(rows: list[dict[str, Any]], first_by_key: dict[str, int]) -> EnqueueManyReport:
    keys = list(first_by_key)
    # All keys in one look-up on PostgreSQL; within SQLite's limit on parameters there.
    per_lookup = max(1, connection.ops.bulk_batch_size(["idempotency_key"], keys))
    now = timezone.now()
    with transaction.atomic():
        found: dict[str, tuple[int, str, Any]] = {}
        for start in range(0, len(keys), per_lookup):
            chunk = keys[start : start + per_lookup]
            for pk, key, action_type, payload in Action.objects.filter(idempotency_key__in=chunk).values_list(
                "pk", "idempotency_key", "action_type", "payload"
            ):
                found[key] = (pk, action_type, payload)
        new = [Action(**{"not_before": now, **rows[index]}) for key, index in first_by_key.items() if key not in found]
        # Plain INSERTs (no ON CONFLICT) so the database hands back every new id; a row raced in
        # by another writer makes the whole batch fail with IntegrityError and the caller retries.
        Action.objects.bulk_create(new, batch_size=_INSERT_BATCH_SIZE)
    ids = {action.idempotency_key: action.pk for action in new}
    created, existing, conflicts = [], [], []
    for index, fields in enumerate(rows):
        key = fields["idempotency_key"]
        if key in ids:
            (created if first_by_key[key] == index else existing).append(ids[key])
            continue
        pk, action_type, payload = found[key]
        if (action_type, payload) == (fields["action_type"], fields["payload"]):
            existing.append(pk)
        else:
            conflicts.append(EnqueueConflict(item=index + 1, idempotency_key=key, action_id=pk))
    return EnqueueManyReport(created=created, existing=existing, conflicts=conflicts)
