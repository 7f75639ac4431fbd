"""Selectors of the console's views (Actions, one action, Attention, Calendar, Audit).

The Overview and the JSON endpoint read ``status_snapshot()`` (services/status.py); these read
what one view lists. Lists are keyset-paginated on the primary key (``?before=<id>``): a page is
one indexed range read of ``page_size + 1`` rows, never an OFFSET, and nothing counts the big
table — how many there are in each status comes from ``action_status_counts()``, exact for open
statuses and estimated for large finished ones.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Generic, TypeVar

from django.db.models import Count, Q, QuerySet

from orchestration.models import (
    ATTENTION_STATUSES,
    DUE_STATUSES,
    Action,
    ActionStatus,
    AuditEntry,
    AuditOutcome,
    ExecutionLog,
    Schedule,
)
from orchestration.services.operator_verb import ACTIONS, OperatorVerb
from orchestration.services.verbs import verbs_where

#: Rows per page of the console's lists.
PAGE_SIZE = 50
#: The most execution-log rows one action's page shows (newest last).
ACTION_LOGS_SHOWN = 200
#: The calendar: how many days one view spans, and the most queued actions and schedule firings it lists.
CALENDAR_DAYS = 7
CALENDAR_ACTIONS = 500
CALENDAR_FIRINGS_PER_SCHEDULE = 48


T = TypeVar("T")


@dataclass(frozen=True)
class KeysetPage(Generic[T]):
    """One page of a list ordered by id descending; ``next_before`` is the ``?before=`` of the next page."""

    rows: list[T]
    next_before: int | None
    before: int | None


def keyset_page(queryset: QuerySet[Any, T], *, before: int | None, page_size: int = PAGE_SIZE) -> KeysetPage[T]:
    """The ``page_size`` rows with the highest ids below ``before`` (all when None), newest first."""
    if before is not None:
        queryset = queryset.filter(pk__lt=before)
    rows = list(queryset.order_by("-pk")[: page_size + 1])
    more = len(rows) > page_size
    rows = rows[:page_size]
    last_pk = getattr(rows[-1], "pk", None) if rows else None
    return KeysetPage(rows=rows, next_before=last_pk if more else None, before=before)


# --- Navigation -----------------------------------------------------------------------------------------


def console_nav_counts() -> dict[str, int]:
    """Actions waiting for a person, for the navigation's badges: open statuses, counted exactly.

    ``COUNT(*) … WHERE status IN (…) GROUP BY status`` is an index-only scan of aol_actions_status_idx
    over few rows, as in ``action_status_counts()``.
    """
    wanted = (*ATTENTION_STATUSES, ActionStatus.AWAITING_APPROVAL)
    counts = dict(Action.objects.order_by().filter(status__in=wanted).values_list("status").annotate(n=Count("*")))
    return {
        "attention": sum(counts.get(status, 0) for status in ATTENTION_STATUSES),
        "approvals": counts.get(ActionStatus.AWAITING_APPROVAL, 0),
    }


# --- Actions --------------------------------------------------------------------------------------------


def console_actions_page(
    *,
    status: str = "",
    action_type: str = "",
    key: str = "",
    before: int | None = None,
    page_size: int = PAGE_SIZE,
) -> KeysetPage[Action]:
    """Actions, newest first, filtered by status, type and exact idempotency key (or ``#id``)."""
    actions = Action.objects.all()
    if status:
        actions = actions.filter(status=status)
    if action_type:
        actions = actions.filter(action_type=action_type)
    key = key.strip()
    if key.lstrip("#").isdigit():  # 42 or #42: that action, or the key "42"
        actions = actions.filter(Q(pk=int(key.lstrip("#"))) | Q(idempotency_key=key))
    elif key:
        actions = actions.filter(idempotency_key=key)
    return keyset_page(
        actions.only(
            "pk",
            "action_type",
            "status",
            "priority",
            "attempts",
            "not_before",
            "updated_at",
            "last_error",
            "idempotency_key",
        ),
        before=before,
        page_size=page_size,
    )


def action_verbs_applicable(*, action: Action) -> list[OperatorVerb]:
    """The operator verbs on actions (services/verbs.py VERBS) whose eligible statuses include this one's
    (and whose ``applies_to``, if any, accepts it)."""
    verbs = [
        verb
        for verb in verbs_where(target=ACTIONS)
        if action.status in verb.eligible and (verb.applies_to is None or verb.applies_to(action))
    ]
    if action.status == ActionStatus.RUNNING and action.cancel_requested:
        verbs = [verb for verb in verbs if verb.name != "cancel"]  # already asked to stop
    return verbs


@dataclass(frozen=True)
class TimelineEntry:
    ts: datetime | None
    kind: str  # "created", "log", "updated"
    level: str
    text: str
    actor: str = ""
    artifact_ref: str = ""
    artifact_sha256: str = ""


@dataclass(frozen=True)
class ActionDetail:
    action: Action
    timeline: list[TimelineEntry]
    logs_cut: bool
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (ref, sha256), newest last
    verbs: list[OperatorVerb] = field(default_factory=list)


def console_action_detail(*, action_id: int) -> ActionDetail | None:
    """One action with its attempts timeline (creation, then its execution log), artifacts and verbs."""
    action = Action.objects.filter(pk=action_id).first()
    if action is None:
        return None
    # The newest ACTION_LOGS_SHOWN rows of its log, through aol_logs_action_idx (action_id, id).
    logs = list(ExecutionLog.objects.filter(action_id=action_id).order_by("-id")[: ACTION_LOGS_SHOWN + 1])
    cut = len(logs) > ACTION_LOGS_SHOWN
    logs = logs[:ACTION_LOGS_SHOWN][::-1]
    timeline = [
        TimelineEntry(
            ts=action.created_at,
            kind="created",
            level="INFO",
            text=f"Enqueued as {action.action_type} with priority {action.priority}.",
        )
    ]
    timeline += [
        TimelineEntry(
            ts=log.ts,
            kind="log",
            level=log.level,
            text=log.message,
            actor=log.actor,
            artifact_ref=log.artifact_ref,
            artifact_sha256=log.artifact_sha256,
        )
        for log in logs
    ]
    artifacts = [(log.artifact_ref, log.artifact_sha256) for log in logs if log.artifact_ref]
    return ActionDetail(
        action=action,
        timeline=timeline,
        logs_cut=cut,
        artifacts=artifacts,
        verbs=action_verbs_applicable(action=action),
    )


# --- Attention ------------------------------------------------------------------------------------------


def console_attention_page(*, before: int | None = None, page_size: int = PAGE_SIZE) -> KeysetPage[Action]:
    """DLQ and NEEDS_REVIEW actions, newest first."""
    return keyset_page(Action.objects.needing_attention(), before=before, page_size=page_size)


# --- Audit ----------------------------------------------------------------------------------------------


def console_audit_page(
    *, actor: str = "", outcome: str = "", before: int | None = None, page_size: int = PAGE_SIZE
) -> KeysetPage[AuditEntry]:
    """Operator actions (the audit trail), newest first, by actor and outcome."""
    entries = AuditEntry.objects.all()
    if actor.strip():
        entries = entries.filter(actor=actor.strip())
    if outcome in AuditOutcome.values:
        entries = entries.filter(outcome=outcome)
    return keyset_page(entries, before=before, page_size=page_size)


# --- Calendar -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarItem:
    at: datetime
    kind: str  # "action" or "schedule"
    action_type: str
    label: str
    action_id: int | None = None
    schedule_id: int | None = None
    status: str = ""


@dataclass(frozen=True)
class CalendarDay:
    day: date
    items: list[CalendarItem]

    @property
    def is_weekend(self) -> bool:
        return self.day.weekday() >= 5


@dataclass(frozen=True)
class Calendar:
    start: date
    days: list[CalendarDay]
    actions_cut: bool  # more queued actions fall in the span than are listed
    firings_cut: list[str]  # schedules with more firings in the span than are listed


def console_calendar(*, start: date, now: datetime, days: int = CALENDAR_DAYS) -> Calendar:
    """What will go out when, per UTC day from ``start``: waiting actions with a future ``not_before``
    and the next firings of enabled schedules (``Schedule.period_next``, as the daemon computes them).

    Nothing before ``now`` is listed: an action due already runs as soon as a daemon claims it.
    """
    span_start = max(datetime.combine(start, time.min, tzinfo=UTC), now)
    span_end = datetime.combine(start + timedelta(days=days), time.min, tzinfo=UTC)
    items: list[CalendarItem] = []
    queued = list(
        Action.objects.filter(status__in=DUE_STATUSES, not_before__gt=span_start, not_before__lt=span_end)
        .order_by("not_before", "id")
        .values_list("pk", "action_type", "idempotency_key", "not_before", "status")[: CALENDAR_ACTIONS + 1]
    )
    items += [
        CalendarItem(at=at, kind="action", action_type=kind, label=key, action_id=pk, status=status)
        for pk, kind, key, at, status in queued[:CALENDAR_ACTIONS]
    ]
    firings_cut = []
    for schedule in Schedule.objects.filter(enabled=True, next_run_at__lt=span_end).order_by("name"):
        firings = list(_firings(schedule, start=span_start, end=span_end))
        if len(firings) > CALENDAR_FIRINGS_PER_SCHEDULE:
            firings_cut.append(schedule.name)
        items += [
            CalendarItem(
                at=at, kind="schedule", action_type=schedule.action_type, label=schedule.name, schedule_id=schedule.pk
            )
            for at in firings[:CALENDAR_FIRINGS_PER_SCHEDULE]
        ]
    by_day: dict[date, list[CalendarItem]] = {start + timedelta(days=n): [] for n in range(days)}
    for item in sorted(items, key=lambda item: (item.at, item.kind, item.label)):
        by_day.setdefault(item.at.astimezone(UTC).date(), []).append(item)
    return Calendar(
        start=start,
        days=[CalendarDay(day=day, items=by_day[day]) for day in sorted(by_day)],
        actions_cut=len(queued) > CALENDAR_ACTIONS,
        firings_cut=firings_cut,
    )


def _firings(schedule: Schedule, *, start: datetime, end: datetime) -> Iterable[datetime]:
    """The schedule's period starts in [max(start, next_run_at), end), one more than listed at most."""
    at = schedule.next_run_at
    if at is None:
        return
    if at < start:
        at = schedule.period_next(after=start - timedelta(microseconds=1))
    for _ in range(CALENDAR_FIRINGS_PER_SCHEDULE + 1):
        if at >= end:
            return
        yield at
        at = schedule.period_next(after=at)
