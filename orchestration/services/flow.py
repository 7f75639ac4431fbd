"""Operator flow control on single actions: cancel them, change their priority (docs/flow-control.md).

Both name the actions explicitly and are all-or-nothing: if any named action cannot be changed
(it does not exist, or it is finished), nothing is changed and the error lists why. Every change
writes one execution-log row per action and one audit row, in one transaction. Rows are never
deleted.
"""

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from orchestration.dbclock import DbNow
from orchestration.exceptions import CancelRefused, ControlChangeRejected
from orchestration.models import (
    CANCELLABLE_STATUSES,
    REPRIORITISABLE_STATUSES,
    Action,
    ActionStatus,
    AuditOutcome,
    LogLevel,
)
from orchestration.services.audit import audit_write, describe_ids
from orchestration.services.control import operator_reason_clean
from orchestration.services.logs import log_entry, log_write_many
from orchestration.services.queue import MAX_BULK_ACTIONS, action_priority_clean

logger = logging.getLogger("orchestration")


def _ids(action_ids: Iterable[int], *, limit: int) -> list[int]:
    try:
        ids = sorted({int(pk) for pk in action_ids})
    except (TypeError, ValueError):
        raise ControlChangeRejected("Action ids must be whole numbers; nothing changed.") from None
    if not ids:
        raise ControlChangeRejected("Name at least one action; nothing changed.")
    if len(ids) > limit:
        raise ControlChangeRejected(f"{len(ids)} actions were named; at most {limit} can be changed in one request.")
    return ids


def _lock(ids: list[int]) -> dict[int, tuple[str, int, bool]]:
    """pk → (status, priority, cancel_requested) of the named actions, row-locked on PostgreSQL."""
    rows = Action.objects.filter(pk__in=ids).select_for_update().order_by("id")
    return {
        pk: (status, priority, cancel)
        for pk, status, priority, cancel in rows.values_list("pk", "status", "priority", "cancel_requested")
    }


def _refuse_missing_or(
    found: dict, ids: list[int], *, allowed: Iterable[str], what: str, exc=ControlChangeRejected
) -> None:
    allowed = {str(status) for status in allowed}
    problems = [f"#{pk} does not exist" for pk in ids if pk not in found]
    problems += [f"#{pk} is {found[pk][0]}" for pk in ids if pk in found and found[pk][0] not in allowed]
    if problems:
        raise exc(f"Cannot {what}: {'; '.join(problems)}. Nothing changed.")


@dataclass(frozen=True)
class CancelReport:
    cancelled: list[int]  # were waiting: now CANCELLED
    stop_requested: list[int]  # were RUNNING: asked to stop; CANCELLED when they stop


def action_cancel(*, action_ids: Iterable[int], actor: str, reason: str, limit: int = MAX_BULK_ACTIONS) -> CancelReport:
    """Cancel waiting actions (PENDING, READY, RETRY, AWAITING_APPROVAL) → CANCELLED, terminal; ask
    RUNNING ones to stop (``cancel_requested``): the daemon interrupts the attempt at its next safe
    point and the action ends CANCELLED (or, if the attempt finishes first, in the outcome it had).

    CancelRefused, with nothing changed, if any named action is finished or in the DLQ (discard it
    instead) or does not exist.
    """
    reason = operator_reason_clean(reason=reason, actor=actor, verb="cancel actions")
    ids = _ids(action_ids, limit=limit)
    with transaction.atomic():
        found = _lock(ids)
        _refuse_missing_or(
            found,
            ids,
            allowed=(*CANCELLABLE_STATUSES, ActionStatus.RUNNING),
            what="cancel (only waiting or running actions can be; finished ones stay as they are, DLQ ones are "
            "discarded)",
            exc=CancelRefused,
        )
        waiting = [pk for pk in ids if found[pk][0] != ActionStatus.RUNNING]
        running = [pk for pk in ids if found[pk][0] == ActionStatus.RUNNING and not found[pk][2]]
        if waiting:
            changed = Action.objects.filter(pk__in=waiting, status__in=CANCELLABLE_STATUSES).update(
                status=ActionStatus.CANCELLED, last_error=f"cancelled by {actor}: {reason}"[:2000], updated_at=DbNow()
            )
            if changed != len(waiting):  # cannot happen while the rows are locked
                raise CancelRefused("The actions changed while being cancelled; nothing changed. Try again.")
        if running:
            # Still RUNNING (the lock holds it) or, on SQLite, serialised with the daemon's writes.
            Action.objects.filter(pk__in=running, status=ActionStatus.RUNNING).update(
                cancel_requested=True, updated_at=DbNow()
            )
        log_write_many(
            [
                *(
                    log_entry(
                        action_id=pk,
                        level=LogLevel.WARNING,
                        message=f"cancel by {actor}: {found[pk][0]} → CANCELLED; reason: {reason}",
                        actor=actor,
                    )
                    for pk in waiting
                ),
                *(
                    log_entry(
                        action_id=pk,
                        level=LogLevel.WARNING,
                        message=f"cancel by {actor}: RUNNING, asked to stop at its next safe point; reason: {reason}",
                        actor=actor,
                    )
                    for pk in running
                ),
            ]
        )
        audit_write(
            actor=actor,
            verb="cancel",
            outcome=AuditOutcome.DONE if waiting or running else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=describe_ids(ids),
            before={"ids": ids, "statuses": dict(Counter(found[pk][0] for pk in ids))},
            after={"cancelled": len(waiting), "stop_requested": len(running)},
        )
    logger.info("operator verb='cancel' actor=%s cancelled=%s stop_requested=%s", actor, waiting, running)
    return CancelReport(cancelled=waiting, stop_requested=running)


def action_set_priority(
    *, action_ids: Iterable[int], priority: int, actor: str, reason: str, limit: int = MAX_BULK_ACTIONS
) -> list[int]:
    """Change the priority of waiting actions (PENDING, READY, RETRY, AWAITING_APPROVAL); returns the
    ids changed (those already at ``priority`` are left alone).

    InvalidPriority for a priority out of range; ControlChangeRejected if any named action is not
    waiting or does not exist. Nothing is changed on error.
    """
    priority = action_priority_clean(priority=priority)
    reason = operator_reason_clean(reason=reason, actor=actor, verb="change priorities")
    ids = _ids(action_ids, limit=limit)
    with transaction.atomic():
        found = _lock(ids)
        _refuse_missing_or(
            found,
            ids,
            allowed=REPRIORITISABLE_STATUSES,
            what="change the priority (only of actions that still wait: PENDING, READY, RETRY, AWAITING_APPROVAL)",
        )
        changed = [pk for pk in ids if found[pk][1] != priority]
        if changed:
            Action.objects.filter(pk__in=changed).update(priority=priority, updated_at=DbNow())
            log_write_many(
                log_entry(
                    action_id=pk,
                    message=f"priority by {actor}: {found[pk][1]} → {priority}; reason: {reason}",
                    actor=actor,
                )
                for pk in changed
            )
        audit_write(
            actor=actor,
            verb="set priority",
            outcome=AuditOutcome.DONE if changed else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=describe_ids(ids),
            before={"ids": ids, "priorities": dict(Counter(str(found[pk][1]) for pk in ids))},
            after={"priority": priority},
        )
    logger.info("operator verb='set priority' actor=%s actions=%s priority=%s", actor, changed, priority)
    return changed
