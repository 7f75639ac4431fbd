"""Rate limits per action type and per key taken from the payload (docs/flow-control.md).

A limit says "at most ``max_count`` runs of this type per key in any ``period_seconds`` window".
It is enforced when the daemon claims an action, against the database: the runs counted are the
actions of that key that are SUCCESS or RUNNING and were claimed (``rate_counted_at``) inside the
window, so the count survives daemon restarts and failovers. Claims are made by the lease holder
only, one transaction at a time, so two daemons can never both take the last slot.

An action over its limit is not failed: its ``not_before`` moves to the earliest time a run fits
every limit, counting the slots already promised to actions of the same key deferred before it,
and ``deferred_note`` says why. When that time comes the claim checks again.

Limits come from the ``aol_rate_limits`` table (edited in the admin); an action type without any
row there uses the defaults of the AOL_RATE_LIMITS setting.
"""

import hashlib
import logging
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from orchestration.conf import aol
from orchestration.models import DUE_STATUSES, RATE_COUNTED_STATUSES, Action, AuditOutcome, RateLimit
from orchestration.services.audit import audit_write

logger = logging.getLogger("orchestration")

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: The key of a limit without key fields (one window for the whole action type).
WHOLE_TYPE_KEY = "*"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Limit:
    """One limit in force, from the database or from AOL_RATE_LIMITS."""

    action_type: str
    key_fields: tuple[str, ...]
    max_count: int
    period_seconds: int
    source: str  # "AOL_RATE_LIMITS" or "rate limit #<id>"

    def describe(self) -> str:
        per = f" per {'+'.join(self.key_fields)}" if self.key_fields else ""
        return f"{self.max_count} per {_duration(self.period_seconds)}{per}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "action_type": self.action_type,
            "key_fields": list(self.key_fields),
            "max_count": self.max_count,
            "period_seconds": self.period_seconds,
            "source": self.source,
            "description": self.describe(),
        }


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# --- Validation (admin form, system check) -----------------------------------------------------------


def key_fields_parse(text: str | list | tuple) -> tuple[str, ...]:
    """``"platform, account"`` → ``("platform", "account")``; ValueError says what is wrong."""
    if isinstance(text, list | tuple):
        items = list(text)
    elif isinstance(text, str):
        items = [part.strip() for part in text.split(",")] if text.strip() else []
    else:
        raise ValueError(f"key fields must be a comma-separated text or a list, not {type(text).__name__}")
    fields = []
    for item in items:
        if not isinstance(item, str) or not _FIELD_NAME.match(item):
            raise ValueError(f"{item!r} is not a payload field name (letters, digits and _ only)")
        if item in fields:
            raise ValueError(f"{item!r} is listed twice")
        fields.append(item)
    return tuple(fields)


def _problems(*, action_type: Any, key_fields: Any, max_count: Any, period_seconds: Any) -> dict[str, str]:
    """Field → problem for one limit's values (empty when valid)."""
    from orchestration.adapters import adapters_all

    problems: dict[str, str] = {}
    registry = adapters_all()
    if action_type not in registry:
        problems["action_type"] = f"Unknown action type {action_type!r}; known types: {', '.join(sorted(registry))}."
    for name, value in (("max_count", max_count), ("period_seconds", period_seconds)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems[name] = f"{name} must be a whole number greater than zero, got {value!r}."
    try:
        fields = key_fields_parse(key_fields)
    except ValueError as exc:
        problems["key_fields"] = f"Invalid key fields: {exc}."
    else:
        adapter = registry.get(action_type)
        allowed = getattr(adapter, "rate_key_fields", ()) if adapter else ()
        unknown = [field for field in fields if allowed and field not in allowed]
        if unknown:
            problems["key_fields"] = (
                f"{action_type} payloads have no rate-limit key field {', '.join(map(repr, unknown))} "
                f"(allowed: {', '.join(allowed)})."
            )
    return problems


def rate_limit_validate(*, limit: RateLimit) -> None:
    """Raise ValidationError (per field) for a RateLimit row an operator is saving."""
    problems = _problems(
        action_type=limit.action_type,
        key_fields=limit.key_fields,
        max_count=limit.max_count,
        period_seconds=limit.period_seconds,
    )
    if not problems and limit.enabled:
        fields = key_fields_parse(limit.key_fields)
        others = RateLimit.objects.filter(action_type=limit.action_type, enabled=True).exclude(pk=limit.pk)
        for other in others:
            if key_fields_parse(other.key_fields) != fields:
                problems["key_fields"] = (
                    f"Every enabled limit of {limit.action_type} must use the same key fields: rate limit "
                    f"#{other.pk} uses {other.key_fields or '(none)'!r}. Change or disable it first."
                )
                break
    if problems:
        raise ValidationError(problems)
    limit.key_fields = ",".join(key_fields_parse(limit.key_fields))


def default_rate_limits_problems() -> list[str]:
    """What is wrong with AOL_RATE_LIMITS (for the system check orchestration.E072)."""
    configured = aol.rate_limits
    if configured in (None, ""):
        return []
    if isinstance(configured, str):
        return [f"AOL_RATE_LIMITS={configured[:80]!r} is not a JSON list."]
    if not isinstance(configured, list | tuple):
        return [f"AOL_RATE_LIMITS must be a list of limits, not {type(configured).__name__}."]
    problems = []
    keys_by_type: dict[str, tuple[str, ...]] = {}
    allowed_keys = {"action_type", "key_fields", "max_count", "period_seconds"}
    for number, entry in enumerate(configured, start=1):
        if not isinstance(entry, dict):
            problems.append(f"AOL_RATE_LIMITS entry {number} must be an object, not {type(entry).__name__}.")
            continue
        unknown = sorted(set(entry) - allowed_keys)
        if unknown:
            problems.append(
                f"AOL_RATE_LIMITS entry {number}: unknown field(s) {', '.join(map(repr, unknown))} "
                f"(allowed: {', '.join(sorted(allowed_keys))})."
            )
        found = _problems(
            action_type=entry.get("action_type"),
            key_fields=entry.get("key_fields", ()),
            max_count=entry.get("max_count"),
            period_seconds=entry.get("period_seconds"),
        )
        problems.extend(f"AOL_RATE_LIMITS entry {number}: {message}" for message in found.values())
        if not found:
            fields = key_fields_parse(entry.get("key_fields", ()))
            seen = keys_by_type.setdefault(entry["action_type"], fields)
            if seen != fields:
                problems.append(
                    f"AOL_RATE_LIMITS entry {number}: every limit of {entry['action_type']} must use the same "
                    f"key fields ({'+'.join(seen) or 'none'})."
                )
    return problems


# --- The limits in force --------------------------------------------------------------------------------


def _default_limits() -> list[Limit]:
    if default_rate_limits_problems():
        return []  # the system check reports it; the daemon refuses to start with it
    return [
        Limit(
            action_type=entry["action_type"],
            key_fields=key_fields_parse(entry.get("key_fields", ())),
            max_count=entry["max_count"],
            period_seconds=entry["period_seconds"],
            source="AOL_RATE_LIMITS",
        )
        for entry in aol.rate_limits or ()
    ]


def _from_row(row: RateLimit) -> Limit:
    try:
        fields = key_fields_parse(row.key_fields)
    except ValueError as exc:
        # Written around the admin's validation: count the whole type under one key, the
        # strictest reading, rather than not limiting at all.
        logger.warning("rate limit id=%s has invalid key fields (%s); applying it to the whole type", row.pk, exc)
        fields = ()
    return Limit(
        action_type=row.action_type,
        key_fields=fields,
        max_count=row.max_count,
        period_seconds=row.period_seconds,
        source=f"rate limit #{row.pk}",
    )


def rate_limits_for(*, action_type: str, db_defined: bool | None = None) -> list[Limit]:
    """The limits in force for ``action_type``: its enabled rows, or the settings' defaults when it has
    no row at all. ``db_defined`` False (known from the claim's query) skips the table read."""
    if db_defined is not False:
        rows = list(RateLimit.objects.filter(action_type=action_type).order_by("id"))
        if rows:
            return [_from_row(row) for row in rows if row.enabled]
    return [limit for limit in _default_limits() if limit.action_type == action_type]


def rate_limits_in_force() -> list[Limit]:
    """Every limit in force, for the status view."""
    rows = list(RateLimit.objects.order_by("action_type", "id"))
    types_in_db = {row.action_type for row in rows}
    limits = [_from_row(row) for row in rows if row.enabled]
    limits += [limit for limit in _default_limits() if limit.action_type not in types_in_db]
    return sorted(limits, key=lambda limit: (limit.action_type, limit.period_seconds))


def rate_key_for(*, payload: dict[str, Any], key_fields: tuple[str, ...]) -> str:
    """The key of ``payload``: its key fields' values, trimmed and lower-cased, joined by ``|``."""
    if not key_fields:
        return WHOLE_TYPE_KEY
    parts = []
    for field in key_fields:
        value = payload.get(field) if isinstance(payload, dict) else None
        parts.append("-" if value is None or value == "" else str(value).strip().lower())
    key = "|".join(parts)
    if len(key) > MAX_KEY_LENGTH:
        key = key[: MAX_KEY_LENGTH - 17] + "#" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return key


# --- The decision at claim time ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RateDecision:
    key: str
    defer_until: datetime | None = None  # None: the action may run now
    note: str = ""


def rate_limit_decide(*, action: Action, limits: list[Limit], now: datetime) -> RateDecision:
    """May ``action`` run at ``now`` under ``limits``? If not, until when is it deferred?

    Two small queries through the ``aol_actions_rate_idx`` index: the counted runs of the key in
    the longest window, and (only when over a limit) the slots already promised to deferred
    actions of the key.
    """
    key = rate_key_for(payload=action.payload, key_fields=limits[0].key_fields)
    longest = timedelta(seconds=max(limit.period_seconds for limit in limits))
    same_key = Action.objects.filter(action_type=action.action_type, rate_key=key).exclude(pk=action.pk)
    counted = sorted(
        at
        for at in same_key.filter(status__in=RATE_COUNTED_STATUSES, rate_counted_at__gt=now - longest).values_list(
            "rate_counted_at", flat=True
        )
        if at is not None
    )
    over = [
        limit
        for limit in limits
        if _count_after(counted, now - timedelta(seconds=limit.period_seconds)) >= limit.max_count
    ]
    if not over:
        return RateDecision(key=key)
    promised = [
        at
        for at in same_key.filter(
            rate_counted_at__isnull=True, status__in=DUE_STATUSES, not_before__gt=now
        ).values_list("not_before", flat=True)
        if at is not None
    ]
    until = earliest_slot(points=sorted(counted + promised), limits=limits, now=now)
    limit = over[0]
    window_count = _count_after(counted, now - timedelta(seconds=limit.period_seconds))
    note = (
        f"deferred: rate limit {limit.describe()} of {action.action_type} reached for {key!r} "
        f"({window_count} run(s) in the last {_duration(limit.period_seconds)}; {limit.source}); "
        f"next allowed at {until:%Y-%m-%d %H:%M:%S} UTC"
    )
    return RateDecision(key=key, defer_until=until, note=note)


def _count_after(points: list[datetime], start: datetime) -> int:
    return len(points) - bisect_right(points, start)


def earliest_slot(*, points: list[datetime], limits: list[Limit], now: datetime) -> datetime:
    """The earliest time >= ``now`` at which one more run keeps every window of every limit within
    its count, given runs (and promised slots) at ``points`` (sorted).

    A run at t lies in the windows (s - p, s] for s in [t, t + p); the busiest of those ends at t or
    at one of the points after t, so only those are checked. Candidates are ``now`` and the moments
    a point leaves a window; the last one always fits.
    """
    periods = sorted({timedelta(seconds=limit.period_seconds) for limit in limits})
    candidates = sorted({now, *(point + period for point in points for period in periods if point + period > now)})
    for t in candidates:
        if all(_fits(points, t, limit) for limit in limits):
            return t
    return candidates[-1]  # not reached: after the last point plus the longest period every window is empty


def _fits(points: list[datetime], t: datetime, limit: Limit) -> bool:
    period = timedelta(seconds=limit.period_seconds)
    ends = [t, *points[bisect_left(points, t) : bisect_left(points, t + period)]]
    for end in ends:
        inside = bisect_right(points, end) - bisect_right(points, end - period)
        if inside + 1 > limit.max_count:
            return False
    return True


# --- Operator changes (audited) ---------------------------------------------------------------------


def _rate_limit_audit_values(limit: RateLimit) -> dict[str, Any]:
    return {
        "action_type": limit.action_type,
        "key_fields": limit.key_fields,
        "max_count": limit.max_count,
        "period_seconds": limit.period_seconds,
        "enabled": limit.enabled,
    }


def rate_limit_save(*, limit: RateLimit, actor: str, reason: str = "") -> RateLimit:
    """Validate (key fields normalised) and save a new or changed rate limit as ``actor``, and audit
    it (before → after), in one transaction."""
    limit.updated_by = actor[:255]
    limit.clean_fields()
    rate_limit_validate(limit=limit)
    limit.validate_constraints()
    with transaction.atomic():
        stored = RateLimit.objects.select_for_update().filter(pk=limit.pk).first() if limit.pk else None
        limit.save()
        audit_write(
            actor=actor,
            verb="add rate limit" if stored is None else "change rate limit",
            outcome=AuditOutcome.DONE,
            reason=reason,
            target=f"rate limit #{limit.pk} ({limit.action_type})",
            before=_rate_limit_audit_values(stored) if stored is not None else {},
            after=_rate_limit_audit_values(limit),
        )
    return limit


def rate_limit_delete(*, limit: RateLimit, actor: str, reason: str = "") -> None:
    """Delete a rate limit and audit it (with its last values), in one transaction."""
    before, pk = _rate_limit_audit_values(limit), limit.pk
    with transaction.atomic():
        limit.delete()
        audit_write(
            actor=actor,
            verb="delete rate limit",
            outcome=AuditOutcome.DONE,
            reason=reason,
            target=f"rate limit #{pk} ({before['action_type']})",
            before=before,
        )
