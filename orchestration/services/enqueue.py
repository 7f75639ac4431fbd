"""Validation and every enqueue of an action: one, many, by a program or by a person (audited)."""

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from orchestration.adapters import ActionAdapter, adapter_get
from orchestration.conf import aol
from orchestration.dbclock import db_now
from orchestration.exceptions import (
    IdempotencyConflict,
    InvalidAction,
    InvalidIdempotencyKey,
    InvalidNotBefore,
    InvalidPayload,
    InvalidPriority,
)
from orchestration.models import MAX_PRIORITY, MIN_PRIORITY, Action, AuditOutcome
from orchestration.services.audit import audit_write, describe_ids
from orchestration.services.control import operator_reason_clean
from orchestration.services.logs import log_write
from orchestration.services.sql import action_insert_unless_key_taken, actions_insert_unless_keys_taken

logger = logging.getLogger("orchestration")


MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_PAYLOAD_DEPTH = 20


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


def action_payload_shape_check(*, payload: Any) -> dict[str, Any]:
    """``payload`` as the database will hand it back; InvalidPayload unless it is a JSON object within the limits."""
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
    payload = action_payload_shape_check(payload=payload)
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
                created = action_insert_unless_key_taken(action=action)
        else:
            # Autocommit: the INSERT commits on its own, in one round trip.
            created = action_insert_unless_key_taken(action=action)
        if created:
            logger.info("action enqueued id=%s type=%s key=%s priority=%s", action.pk, action_type, key, priority)
            return action, True
        existing = Action.objects.filter(idempotency_key=key).first()
        if existing is None:
            continue  # the holder of the key was deleted (pruned) in between: try the INSERT again
        # An approver may have edited its text (services/approval.py): the planner's own payload is still it.
        if existing.action_type != action_type or payload not in (existing.payload, existing.planned_payload):
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
    found: dict[str, tuple[int, list[tuple]]] = {}  # key -> (id, its _identity(s)) of an action that had it
    with transaction.atomic():
        todo = [rows[index] for index in first_by_key.values()]
        for _ in range(_RACE_RETRIES):
            now = db_now()
            for start in range(0, len(todo), _INSERT_BATCH_SIZE):
                ids.update(actions_insert_unless_keys_taken(rows=todo[start : start + _INSERT_BATCH_SIZE], now=now))
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
    created: list[int] = []
    existing: list[int] = []
    conflicts: list[EnqueueConflict] = []
    for index, fields in enumerate(rows):
        key = fields["idempotency_key"]
        if key in ids:
            (created if first_by_key[key] == index else existing).append(ids[key])
            continue
        pk, identities = found[key]
        if _identity(fields) in identities:
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


def _identity(fields: dict[str, Any]) -> tuple:
    """What two enqueues of one key must share to be the same action (as in ``action_enqueue``)."""
    return fields["action_type"], fields["payload"], fields["requires_approval"]


def _actions_holding_keys(keys: list[str]) -> dict[str, tuple[int, list[tuple]]]:
    """``{key: (id, [_identity, …])}`` of the actions holding any of ``keys``: one identity, or two when an
    approver edited its payload (the planner's original one is still the same action)."""
    found = {}
    # All keys in one look-up on PostgreSQL; within SQLite's limit on parameters there.
    per_lookup = max(1, connection.ops.bulk_batch_size(["idempotency_key"], keys))
    for start in range(0, len(keys), per_lookup):
        for pk, key, *identity in Action.objects.filter(
            idempotency_key__in=keys[start : start + per_lookup]
        ).values_list("pk", "idempotency_key", "action_type", "payload", "requires_approval", "planned_payload"):
            action_type, payload, requires_approval, planned = identity
            identities = [(action_type, payload, requires_approval)]
            if planned is not None:
                identities.append((action_type, planned, requires_approval))
            found[key] = (pk, identities)
    return found
