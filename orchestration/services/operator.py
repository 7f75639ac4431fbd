"""The operator verbs on actions.

The services of the verbs on actions (retry, discard, requeue now, cancel, set priority) and their
rows of the verb table (``ACTION_VERBS``; the whole table is ``VERBS`` in ``services/verbs.py``).

One bulk rule for every verb on actions: the eligible actions among those chosen change, the others
are skipped and counted ("3 actions retried; 1 skipped, not DLQ or NEEDS_REVIEW: #7 is PENDING.").
A request in which no chosen action is eligible is refused with ``NoEligibleActions`` and writes
nothing. Every change writes one execution-log row per action and one audit row, in one transaction;
rows are never deleted.
"""

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from orchestration.dbclock import DbNow
from orchestration.exceptions import ControlChangeRejected, NoEligibleActions
from orchestration.models import (
    ATTENTION_STATUSES,
    CANCELLABLE_STATUSES,
    DUE_STATUSES,
    REPRIORITISABLE_STATUSES,
    Action,
    ActionStatus,
    AuditOutcome,
    ExecutionLog,
    LogLevel,
)
from orchestration.services.audit import audit_write, describe_ids
from orchestration.services.control import operator_reason_clean
from orchestration.services.enqueue import action_priority_clean
from orchestration.services.logs import log_entry, log_write_many
from orchestration.services.operator_verb import (
    CONSOLE_ACTIONS,
    CONSOLE_ATTENTION,
    OperatorVerb,
    action_verb,
    count_text,
    skipped_detail,
)
from orchestration.services.results import MAX_ERROR_LENGTH

logger = logging.getLogger("orchestration")

#: The most actions one operator request may change; the admin's bulk pages cap at this too.
MAX_BULK_ACTIONS = 1000


# --- The verbs on actions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkReport:
    """What one request did: ``changed`` actions, eligible ones with nothing to change, skipped ones."""

    verb: OperatorVerb
    changed: list[int]
    unchanged: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # id → its status, or "" when it does not exist
    stop_requested: list[int] = field(default_factory=list)  # cancel: RUNNING ones asked to stop (in changed)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def cancelled(self) -> list[int]:
        stopping = set(self.stop_requested)
        return [pk for pk in self.changed if pk not in stopping]

    def summary(self) -> str:
        """``3 actions retried; 1 skipped, not DLQ or NEEDS_REVIEW: #7 is PENDING.``"""
        verb, parts = self.verb, []
        done = len(self.changed) - len(self.stop_requested)
        if done or not (self.stop_requested or self.unchanged):
            parts.append(f"{count_text(done, 'action')} {verb.done.format(**self.params)}")
        if self.stop_requested:
            parts.append(f"{count_text(len(self.stop_requested), 'running action')} asked to stop")
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} {verb.already.format(**self.params)}")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped, not {verb.eligible_text}: {skipped_detail(self.skipped)}")
        return "; ".join(parts) + "."


def action_ids_clean(*, action_ids: Iterable[Any] | None, limit: int, required: bool) -> list[int] | None:
    """The chosen ids, sorted and unique (None: all eligible); ControlChangeRejected when not ids,
    none when some are required, or more than ``limit``."""
    if action_ids is None:
        if required:
            raise ControlChangeRejected("Name at least one action; nothing changed.")
        return None
    try:
        ids = sorted({int(pk) for pk in action_ids})
    except (TypeError, ValueError):
        raise ControlChangeRejected("Action ids must be whole numbers; nothing changed.") from None
    if not ids:
        raise ControlChangeRejected("Name at least one action; nothing changed.")
    if len(ids) > limit:
        raise ControlChangeRejected(f"{len(ids)} actions were chosen; at most {limit} can be changed in one request.")
    return ids


@dataclass(frozen=True)
class _Row:
    pk: int
    status: str
    attempts: int
    priority: int
    cancel_requested: bool


@dataclass
class _Applied:
    changed: list[int]
    logs: list[ExecutionLog]
    after: dict[str, Any]
    unchanged: list[int] = field(default_factory=list)
    stop_requested: list[int] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)


def _actions_change(
    *,
    verb_name: str,
    action_ids: Iterable[Any] | None,
    actor: str,
    reason: str,
    limit: int,
    apply: Callable[[list[_Row], str], _Applied],
    params: dict[str, Any] | None = None,
) -> BulkReport:
    """Lock the chosen actions, apply ``apply`` to the eligible ones, log and audit; the bulk rule."""
    verb = _BY_NAME[verb_name]
    reason = operator_reason_clean(reason=reason, actor=actor, verb=verb.audit_verb)
    ids = action_ids_clean(action_ids=action_ids, limit=limit, required=not verb.all_scope)
    columns = ("pk", "status", "attempts", "priority", "cancel_requested")
    with transaction.atomic():
        # Row locks (PostgreSQL) make a daemon's SKIP LOCKED claim pass these actions by while they
        # change; on SQLite the IMMEDIATE transaction already holds the write lock.
        if ids is None:
            rows = Action.objects.filter(status__in=verb.eligible).select_for_update().order_by("id")[:limit]
        else:
            rows = Action.objects.filter(pk__in=ids).select_for_update().order_by("id")
        found = {row[0]: _Row(*row) for row in rows.values_list(*columns)}
        eligible = [row for row in found.values() if row.status in verb.eligible]
        skipped = {pk: "" for pk in ids or () if pk not in found}
        skipped.update({row.pk: row.status for row in found.values() if row.status not in verb.eligible})
        skipped = dict(sorted(skipped.items()))
        if not eligible:
            raise NoEligibleActions(verb.refusal(skipped, chosen=ids is not None))
        applied = apply(eligible, reason)
        log_write_many(applied.logs)
        eligible_ids = [row.pk for row in eligible]
        audit_write(
            actor=actor,
            verb=verb.audit_verb,
            outcome=AuditOutcome.DONE if applied.changed else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=describe_ids(eligible_ids),
            before={
                "ids": eligible_ids,
                "statuses": dict(Counter(row.status for row in eligible)),
                **applied.before,
                **({"skipped": {str(pk): status or "missing" for pk, status in skipped.items()}} if skipped else {}),
            },
            after=applied.after,
        )
    report = BulkReport(
        verb=verb,
        changed=applied.changed,
        unchanged=applied.unchanged,
        skipped=skipped,
        stop_requested=applied.stop_requested,
        params=params or {},
    )
    logger.info(
        "operator verb=%r actor=%s changed=%s unchanged=%s skipped=%s reason=%r",
        verb.audit_verb,
        actor,
        len(report.changed),
        len(report.unchanged),
        len(report.skipped),
        reason,
    )
    return report


def _update_all(rows: list[_Row], *, statuses: Iterable[str], **fields: Any) -> None:
    ids = [row.pk for row in rows]
    updated = Action.objects.filter(pk__in=ids, status__in=statuses).update(**fields, updated_at=DbNow())
    if updated != len(ids):  # cannot happen while the rows are locked; refuse rather than half-log
        raise ControlChangeRejected("The actions changed while being updated; nothing was done. Try again.")


def _status_change(
    verb_name: str, new_status: str, *, actor: str, reset: bool = False
) -> Callable[[list[_Row], str], _Applied]:
    def apply(rows: list[_Row], reason: str) -> _Applied:
        verb = _BY_NAME[verb_name]
        fields: dict[str, Any] = {"status": new_status}
        if reset:
            fields.update(attempts=0, not_before=DbNow(), last_error="")
        _update_all(rows, statuses=verb.eligible, **fields)
        attempts = ", attempts {} → 0" if reset else ""
        logs = [
            log_entry(
                action_id=row.pk,
                message=f"{verb.audit_verb} by {actor}: {row.status} → {new_status}"
                + attempts.format(row.attempts)
                + f"; reason: {reason}",
                actor=actor,
            )
            for row in rows
        ]
        after = {"status": new_status, "attempts": 0} if reset else {"status": new_status}
        return _Applied(changed=[row.pk for row in rows], logs=logs, after=after)

    return apply


def action_retry(
    *, action_ids: Iterable[int] | None = None, actor: str, reason: str, limit: int = MAX_BULK_ACTIONS
) -> BulkReport:
    """Send DLQ and NEEDS_REVIEW actions back to PENDING with attempts reset, due now.

    ``action_ids`` None means every such action, oldest first, up to ``limit``.
    """
    return _actions_change(
        verb_name="retry",
        action_ids=action_ids,
        actor=actor,
        reason=reason,
        limit=limit,
        apply=_status_change("retry", ActionStatus.PENDING, actor=actor, reset=True),
    )


def action_discard(
    *, action_ids: Iterable[int] | None = None, actor: str, reason: str, limit: int = MAX_BULK_ACTIONS
) -> BulkReport:
    """Give DLQ and NEEDS_REVIEW actions up → FAILED (terminal; the row and its last error stay)."""
    return _actions_change(
        verb_name="discard",
        action_ids=action_ids,
        actor=actor,
        reason=reason,
        limit=limit,
        apply=_status_change("discard", ActionStatus.FAILED, actor=actor),
    )


def action_requeue_now(
    *, action_ids: Iterable[int] | None = None, actor: str, reason: str, limit: int = MAX_BULK_ACTIONS
) -> BulkReport:
    """Make waiting actions (PENDING, READY, RETRY) due now instead of at their not_before time."""

    def apply(rows: list[_Row], why: str) -> _Applied:
        _update_all(rows, statuses=DUE_STATUSES, not_before=DbNow())
        logs = [
            log_entry(
                action_id=row.pk, message=f"requeue now by {actor} (status {row.status}); reason: {why}", actor=actor
            )
            for row in rows
        ]
        return _Applied(changed=[row.pk for row in rows], logs=logs, after={"not_before": "now"})

    return _actions_change(
        verb_name="requeue", action_ids=action_ids, actor=actor, reason=reason, limit=limit, apply=apply
    )


def action_cancel(*, action_ids: Iterable[int], actor: str, reason: str, limit: int = MAX_BULK_ACTIONS) -> BulkReport:
    """Cancel waiting actions (PENDING, READY, RETRY, AWAITING_APPROVAL) → CANCELLED, terminal; ask
    RUNNING ones to stop (``cancel_requested``): the daemon interrupts the attempt at its next safe
    point and the action ends CANCELLED (or, if the attempt finishes first, in the outcome it had).

    Finished, DLQ and NEEDS_REVIEW actions (discard those) and unknown ids are skipped.
    """

    def apply(rows: list[_Row], why: str) -> _Applied:
        waiting = [row for row in rows if row.status != ActionStatus.RUNNING]
        running = [row for row in rows if row.status == ActionStatus.RUNNING and not row.cancel_requested]
        asked = [row.pk for row in rows if row.status == ActionStatus.RUNNING and row.cancel_requested]
        if waiting:
            _update_all(
                waiting,
                statuses=CANCELLABLE_STATUSES,
                status=ActionStatus.CANCELLED,
                last_error=f"cancelled by {actor}: {why}"[:MAX_ERROR_LENGTH],
            )
        if running:
            # Still RUNNING (the lock holds it) or, on SQLite, serialised with the daemon's writes.
            Action.objects.filter(pk__in=[row.pk for row in running], status=ActionStatus.RUNNING).update(
                cancel_requested=True, updated_at=DbNow()
            )
        logs = [
            *(
                log_entry(
                    action_id=row.pk,
                    level=LogLevel.WARNING,
                    message=f"cancel by {actor}: {row.status} → CANCELLED; reason: {why}",
                    actor=actor,
                )
                for row in waiting
            ),
            *(
                log_entry(
                    action_id=row.pk,
                    level=LogLevel.WARNING,
                    message=f"cancel by {actor}: RUNNING, asked to stop at its next safe point; reason: {why}",
                    actor=actor,
                )
                for row in running
            ),
        ]
        return _Applied(
            changed=sorted(row.pk for row in [*waiting, *running]),
            unchanged=asked,
            stop_requested=[row.pk for row in running],
            logs=logs,
            after={"cancelled": len(waiting), "stop_requested": len(running)},
        )

    return _actions_change(
        verb_name="cancel", action_ids=action_ids, actor=actor, reason=reason, limit=limit, apply=apply
    )


def action_set_priority(
    *, action_ids: Iterable[int], priority: int, actor: str, reason: str, limit: int = MAX_BULK_ACTIONS
) -> BulkReport:
    """Change the priority of waiting actions (PENDING, READY, RETRY, AWAITING_APPROVAL); those
    already at ``priority`` are left alone. InvalidPriority, with nothing written, when out of range."""
    priority = action_priority_clean(priority=priority)

    def apply(rows: list[_Row], why: str) -> _Applied:
        changing = [row for row in rows if row.priority != priority]
        if changing:
            _update_all(changing, statuses=REPRIORITISABLE_STATUSES, priority=priority)
        logs = [
            log_entry(
                action_id=row.pk,
                message=f"priority by {actor}: {row.priority} → {priority}; reason: {why}",
                actor=actor,
            )
            for row in changing
        ]
        return _Applied(
            changed=[row.pk for row in changing],
            unchanged=[row.pk for row in rows if row.priority == priority],
            logs=logs,
            before={"priorities": dict(Counter(str(row.priority) for row in rows))},
            after={"priority": priority},
        )

    return _actions_change(
        verb_name="priority",
        action_ids=action_ids,
        actor=actor,
        reason=reason,
        limit=limit,
        apply=apply,
        params={"priority": priority},
    )


# --- Their rows of the verb table ----------------------------------------------------------------------

_NEEDS_A_PERSON = "DLQ or NEEDS_REVIEW"

ACTION_VERBS: tuple[OperatorVerb, ...] = (
    action_verb(
        "retry",
        "Retry",
        description=f"Retry selected {_NEEDS_A_PERSON} actions (back to PENDING)",
        audit_verb="retry DLQ",
        service=action_retry,
        outcome="go back to PENDING with attempts reset",
        eligible=ATTENTION_STATUSES,
        eligible_text=_NEEDS_A_PERSON,
        done="retried",
        all_scope=True,
        admin="retry_dlq",
        console=CONSOLE_ATTENTION,
        slug="retry",
    ),
    action_verb(
        "discard",
        "Discard",
        description=f"Discard selected {_NEEDS_A_PERSON} actions (mark FAILED)",
        audit_verb="discard DLQ",
        service=action_discard,
        outcome="be marked FAILED (kept, not deleted)",
        eligible=ATTENTION_STATUSES,
        eligible_text=_NEEDS_A_PERSON,
        done="discarded",
        all_scope=True,
        danger=True,
        admin="discard_dlq",
        console=CONSOLE_ATTENTION,
        slug="discard",
    ),
    action_verb(
        "requeue",
        "Requeue now",
        description="Requeue selected waiting actions now",
        audit_verb="requeue now",
        service=action_requeue_now,
        outcome="become due now",
        eligible=DUE_STATUSES,
        eligible_text="waiting (PENDING, READY, RETRY)",
        done="requeued",
        admin="requeue_now",
        console=CONSOLE_ACTIONS,
        slug="requeue",
    ),
    action_verb(
        "cancel",
        "Cancel",
        description="Cancel selected waiting or running actions",
        audit_verb="cancel",
        service=action_cancel,
        outcome="be CANCELLED (kept, not deleted; running ones are asked to stop first)",
        eligible=(*CANCELLABLE_STATUSES, ActionStatus.RUNNING),
        eligible_text="waiting or running (PENDING, READY, RETRY, AWAITING_APPROVAL, RUNNING)",
        done="cancelled",
        already="already asked to stop",
        danger=True,
        admin="cancel_actions",
        console=CONSOLE_ACTIONS,
        slug="cancel",
        cli="aol_cancel ID …",
    ),
    action_verb(
        "priority",
        "Set priority",
        description="Change the priority of selected waiting actions",
        audit_verb="set priority",
        service=action_set_priority,
        outcome="get the priority below",
        eligible=REPRIORITISABLE_STATUSES,
        eligible_text="waiting (PENDING, READY, RETRY, AWAITING_APPROVAL)",
        done="moved to priority {priority}",
        already="already at priority {priority}",
        asks=("priority",),
        admin="set_priority",
        console=CONSOLE_ACTIONS,
        slug="priority",
    ),
)
_BY_NAME = {verb.name: verb for verb in ACTION_VERBS}
