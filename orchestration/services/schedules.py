"""Schedules: recurring actions fired by the lease holder exactly once per period.

A period is an instant in UTC: a cron expression's matching minute, or a multiple of the
interval since the Unix epoch. ``schedule_fire_due`` enqueues, for every enabled schedule whose
``next_run_at`` has come, the newest ``catch_up`` periods that are due, each with the idempotency
key ``schedule:<id>:<period start ISO>``. The key is what makes "once per period" hold: if two
daemons (a standby taking over, a stalled holder waking up) or two calls fire the same period,
the second enqueue returns the first action. Older missed periods are passed over, so a daemon
that was down for a day does not flood the queue.
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from orchestration.dbclock import DbNow
from orchestration.exceptions import IdempotencyConflict, InvalidAction
from orchestration.models import Action, AuditOutcome, LogLevel, Schedule
from orchestration.periods import cron_problem, periods_due
from orchestration.services.audit import audit_write
from orchestration.services.enqueue import action_enqueue, action_fields_clean
from orchestration.services.lease import lease_is_current
from orchestration.services.logs import log_write

logger = logging.getLogger("orchestration")


def schedule_period_next(*, schedule: Schedule, after: datetime) -> datetime:
    return schedule.period_next(after=after)


def schedule_key(*, schedule_id: int, period: datetime) -> str:
    """``schedule:<id>:<period start, ISO 8601 UTC>``: one action per schedule and period."""
    return f"schedule:{schedule_id}:{period.astimezone(UTC).isoformat()}"


def schedule_render_payload(*, template: Any, schedule_name: str, period: datetime) -> Any:
    """The template with {period} and {schedule} replaced in its text values (nothing else is
    interpreted, so braces in a message are safe)."""
    if isinstance(template, str):
        return template.replace("{period}", period.astimezone(UTC).isoformat()).replace("{schedule}", schedule_name)
    if isinstance(template, dict):
        return {
            key: schedule_render_payload(template=value, schedule_name=schedule_name, period=period)
            for key, value in template.items()
        }
    if isinstance(template, list):
        return [
            schedule_render_payload(template=value, schedule_name=schedule_name, period=period) for value in template
        ]
    return template


# --- Validation and saving ---------------------------------------------------------------------------


def schedule_clean(*, schedule: Schedule) -> None:
    """Raise ValidationError naming every problem (by field) of ``schedule``; nothing is written."""
    errors: dict[str, list[str]] = {}

    def problem(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    cron = (schedule.cron or "").strip()
    schedule.cron = cron
    interval = schedule.interval_seconds
    if cron and interval is not None:
        problem("interval_seconds", "Give either a cron expression or an interval, not both.")
    elif not cron and interval is None:
        problem("cron", "Give a cron expression or an interval in seconds.")
    elif cron:
        message = cron_problem(cron)
        if message:
            problem("cron", message)
    elif isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0:
        problem(
            "interval_seconds", f"The interval must be a whole number of seconds greater than zero, not {interval!r}."
        )
    catch_up = schedule.catch_up
    if isinstance(catch_up, bool) or not isinstance(catch_up, int) or not 1 <= catch_up <= Schedule.MAX_CATCH_UP:
        problem("catch_up", f"Catch-up must be a whole number from 1 to {Schedule.MAX_CATCH_UP}, not {catch_up!r}.")
    sample = schedule_render_payload(
        template=schedule.payload_template, schedule_name=schedule.name or "schedule", period=timezone.now()
    )
    try:
        action_fields_clean(action_type=schedule.action_type, payload=sample)
    except InvalidAction as exc:
        if exc.field == "action_type":
            problem("action_type", str(exc))
        else:
            problem("payload_template", f"{schedule.action_type} rejects this payload: {exc}")
    if errors:
        raise ValidationError(errors)


# --- Firing (the daemon's tick) ---------------------------------------------------------------------


@dataclass
class ScheduleFireReport:
    created: list[int] = field(default_factory=list)  # ids of actions queued by this call
    existing: list[int] = field(default_factory=list)  # periods someone had already queued
    skipped_periods: int = 0  # schedules that passed over missed periods beyond their catch-up
    errors: list[str] = field(default_factory=list)

    def note(self) -> str:
        parts = []
        if self.created:
            parts.append(f"schedules queued {len(self.created)} action(s)")
        if self.errors:
            parts.append(f"{len(self.errors)} schedule error(s)")
        return ", ".join(parts)


def schedule_fire_due(*, now: datetime | None = None, token: int | None = None, actor: str = "") -> ScheduleFireReport:
    """Enqueue the due periods of every enabled schedule (see the module docstring).

    ``now`` is the database's clock unless given, so a daemon whose host clock is off fires each
    period when it has come for everyone. One query when nothing is due. Each due schedule is
    handled in its own short transaction that locks its row, so two callers fire a period once
    between them; with ``token`` (the daemon's lease token) a caller that lost the lease fires nothing.
    """
    report = ScheduleFireReport()
    due = list(
        Schedule.objects.filter(enabled=True, next_run_at__lte=now or DbNow())
        .annotate(db_now=DbNow())
        .order_by("next_run_at", "id")
        .values_list("pk", "db_now")
    )
    for pk, moment in due:
        try:
            _fire_one(pk=pk, now=now or moment, token=token, actor=actor, report=report)
        except DatabaseError:
            raise  # the daemon's loop handles these (reconnect, new lease tenure)
        except Exception as exc:  # a row broken behind the admin's back must not stop the daemon
            logger.exception("schedule id=%s could not be fired", pk)
            report.errors.append(f"schedule #{pk}: {type(exc).__name__}: {exc}")
    return report


def _fire_one(*, pk: int, now: datetime, token: int | None, actor: str, report: ScheduleFireReport) -> None:
    with transaction.atomic():
        rows = Schedule.objects.select_for_update().filter(pk=pk, enabled=True, next_run_at__lte=now)
        if token is not None:
            rows = rows.filter(lease_is_current(token=token))
        schedule = rows.first()
        if schedule is None or schedule.next_run_at is None:  # fired, disabled or deleted meanwhile, or lease gone
            return
        periods, skipped = periods_due(
            cron=schedule.cron,
            interval_seconds=schedule.interval_seconds,
            first=schedule.next_run_at,
            now=now,
            limit=schedule.catch_up,
        )
        for period in periods:
            _enqueue_period(schedule=schedule, period=period, actor=actor, report=report)
        if skipped:
            report.skipped_periods += 1
            log_write(
                level=LogLevel.WARNING,
                message=f"schedule {schedule.name!r} (#{schedule.pk}): missed periods older than "
                f"{periods[0].isoformat()} were passed over (catch-up {schedule.catch_up})",
                actor=actor,
            )
        newest = periods[-1] if periods else schedule.next_run_at
        Schedule.objects.filter(pk=pk).update(
            last_period_at=newest,
            next_run_at=schedule_period_next(schedule=schedule, after=max(now, newest)),
            updated_at=DbNow(),
        )


def _enqueue_period(*, schedule: Schedule, period: datetime, actor: str, report: ScheduleFireReport) -> None:
    key = schedule_key(schedule_id=schedule.pk, period=period)
    payload = schedule_render_payload(template=schedule.payload_template, schedule_name=schedule.name, period=period)
    try:
        with transaction.atomic():
            action, created = action_enqueue(
                action_type=schedule.action_type, payload=payload, idempotency_key=key, not_before=period
            )
    except IdempotencyConflict:
        # The period was queued before the template changed: it has fired, with the old payload.
        report.existing.extend(Action.objects.filter(idempotency_key=key).values_list("pk", flat=True))
        return
    except InvalidAction as exc:
        # The adapter no longer accepts the template (or the type is gone): the period is passed
        # over with one error row, rather than retried (and logged) on every tick.
        message = f"schedule {schedule.name!r} (#{schedule.pk}) could not queue period {period.isoformat()}: {exc}"
        report.errors.append(message)
        logger.error("schedule id=%s period=%s error=%s", schedule.pk, period.isoformat(), exc)
        log_write(level=LogLevel.ERROR, message=message, actor=actor)
        return
    if created:
        report.created.append(action.pk)
        logger.info("schedule id=%s fired period=%s action=%s", schedule.pk, period.isoformat(), action.pk)
    else:
        report.existing.append(action.pk)


# --- Operator changes (audited) ---------------------------------------------------------------------

#: What the audit trail records about a schedule (before → after).
SCHEDULE_AUDIT_FIELDS = ("name", "enabled", "action_type", "payload_template", "cron", "interval_seconds", "catch_up")


def _schedule_audit_values(schedule: Schedule) -> dict[str, Any]:
    return {name: getattr(schedule, name) for name in SCHEDULE_AUDIT_FIELDS}


def _schedule_validate(schedule: Schedule) -> None:
    """Every check the admin's form makes, for callers that bypass it (raises ValidationError)."""
    schedule.clean_fields()
    schedule_clean(schedule=schedule)
    schedule.validate_unique()
    schedule.validate_constraints()


def schedule_save(*, schedule: Schedule, actor: str, reason: str) -> Schedule:
    """Validate and save a new or changed ``schedule`` and audit it (the changed fields, before →
    after), in one transaction; an unchanged schedule is audited as NO_CHANGE."""
    _schedule_validate(schedule)
    with transaction.atomic():
        stored = Schedule.objects.select_for_update().filter(pk=schedule.pk).first() if schedule.pk else None
        before = _schedule_audit_values(stored) if stored is not None else {}
        schedule.save()
        after = _schedule_audit_values(schedule)
        audit_write(
            actor=actor,
            verb="add schedule" if stored is None else "change schedule",
            outcome=AuditOutcome.DONE if (stored is None or after != before) else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=f"schedule #{schedule.pk} {schedule.name}",
            before={k: v for k, v in before.items() if after.get(k) != v},
            after={k: v for k, v in after.items() if before.get(k) != v},
        )
    return schedule


def schedule_delete(*, schedule: Schedule, actor: str, reason: str) -> None:
    """Delete ``schedule`` and audit it (with its last values), in one transaction."""
    with transaction.atomic():
        audit_write(
            actor=actor,
            verb="delete schedule",
            outcome=AuditOutcome.DONE,
            reason=reason,
            target=f"schedule #{schedule.pk} {schedule.name}",
            before=_schedule_audit_values(schedule),
        )
        schedule.delete()
