"""What operators may do, in one table: the verbs on actions, per action type, and on the control flags.

``VERBS`` is the single description of every operator verb: its permission, the service it calls,
the statuses it acts on, what a request naming several actions does, the texts the admin, the
console and the commands show, and where each verb is offered. Those interfaces read it; none keeps
a list of its own.

The verbs on actions (retry, discard, requeue now, cancel, set priority) are defined here; the
per-type pause and the control flags keep their services in ``services/control.py``.

One bulk rule for every verb on actions: the eligible actions among those chosen change, the others
are skipped and counted ("3 actions retried; 1 skipped, not DLQ or NEEDS_REVIEW: #7 is PENDING.").
A request in which no chosen action is eligible is refused with ``NoEligibleActions`` and writes
nothing. Every change writes one execution-log row per action and one audit row, in one transaction;
rows are never deleted.
"""

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django.db import models, transaction

from orchestration import permissions
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
    ControlFlags,
    ExecutionLog,
    LogLevel,
)
from orchestration.services import control
from orchestration.services.audit import admin_log_write, audit_denied, audit_write, describe_ids
from orchestration.services.control import operator_reason_clean
from orchestration.services.enqueue import action_priority_clean
from orchestration.services.logs import log_entry, log_write_many
from orchestration.services.results import MAX_ERROR_LENGTH

logger = logging.getLogger("orchestration")

#: The most actions one operator request may change; the admin's bulk pages cap at this too.
MAX_BULK_ACTIONS = 1000
#: How many skipped actions a report names (it counts them all).
SKIPPED_NAMED = 5

# What a verb acts on.
ACTIONS, ACTION_TYPE, FLAGS = "actions", "action type", "control flags"
# What a request naming several targets does (verbs on one action type or on the flags name one target).
BULK_ELIGIBLE = "acts on the eligible actions, skips and counts the others; refused when none is eligible"
BULK_SINGLE = "one target per request"
# The confirmation a verb asks for beyond a reason.
CONFIRM_TICK, CONFIRM_TYPE_REAL = "tick a box", "type REAL"
# Where a verb is offered. Console groups are the status view's forms; each has its own URL.
CONSOLE_FLAGS, CONSOLE_ATTENTION, CONSOLE_TYPES, CONSOLE_ACTIONS = "control", "dlq", "types", "actions"


@dataclass(frozen=True)
class OperatorVerb:
    """One operator verb, as every interface shows and runs it."""

    name: str
    label: str  # buttons and messages: "Retry"
    description: str  # menus and help: "Retry selected DLQ or NEEDS_REVIEW actions (back to PENDING)"
    audit_verb: str  # the verb of its audit and execution-log rows
    permission: str
    service: Callable[..., Any]
    target: str
    outcome: str  # what happens, after "N actions will …" or "… will"
    bulk: str
    service_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    eligible: tuple[str, ...] = ()  # statuses of the actions it acts on
    eligible_text: str = ""  # the same, for people: "none of the chosen actions is {eligible_text}"
    done: str = ""  # "3 actions {done}"
    already: str = ""  # "1 {already}": eligible, but nothing to change
    all_scope: bool = False  # may act on every eligible action (oldest first) without naming them
    asks: tuple[str, ...] = ()  # what it needs beyond the targets and a reason: ("priority",)
    flag: tuple[str, bool] | None = None  # the control flag it sets, and to what
    confirm: str = ""
    danger: bool = False
    admin: str = ""  # its admin action, or "flags" for a field of the control flags' page
    console: str = ""  # its console group (the URL it is posted to) …
    slug: str = ""  # … and its part of that URL
    cli: str = ""  # the command line that runs it

    def call(self, **kwargs: Any) -> Any:
        return self.service(**self.service_kwargs, **kwargs)

    def refusal(self, skipped: Mapping[int, str] | None, *, chosen: bool = True) -> str:
        """Why a request with no eligible action changes nothing."""
        if not chosen:
            return f"Nothing to {self.label.lower()}: no action is {self.eligible_text}. Nothing changed."
        named = f": {_skipped_detail(skipped)}" if skipped else ""
        return (
            f"Nothing to {self.label.lower()}: none of the chosen actions is {self.eligible_text}{named}. "
            "Nothing changed."
        )


def _flag_verb(name: str, label: str, description: str, *, audit_verb: str, permission: str, **fields) -> OperatorVerb:
    return OperatorVerb(
        name=name,
        label=label,
        description=description,
        audit_verb=audit_verb,
        permission=permission,
        target=FLAGS,
        bulk=BULK_SINGLE,
        admin="flags",
        console=CONSOLE_FLAGS,
        slug=name,
        **fields,
    )


def _type_verb(name: str, label: str, **fields) -> OperatorVerb:
    return OperatorVerb(
        name=name,
        label=label,
        permission=permissions.PAUSE_DAEMON,
        target=ACTION_TYPE,
        bulk=BULK_SINGLE,
        console=CONSOLE_TYPES,
        **fields,
    )


def _action_verb(name: str, label: str, **fields) -> OperatorVerb:
    return OperatorVerb(
        name=name, label=label, permission=permissions.MANAGE_DLQ, target=ACTIONS, bulk=BULK_ELIGIBLE, **fields
    )


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
            parts.append(f"{_count(done, 'action')} {verb.done.format(**self.params)}")
        if self.stop_requested:
            parts.append(f"{_count(len(self.stop_requested), 'running action')} asked to stop")
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} {verb.already.format(**self.params)}")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped, not {verb.eligible_text}: {_skipped_detail(self.skipped)}")
        return "; ".join(parts) + "."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _skipped_detail(skipped: Mapping[int, str]) -> str:
    named = [f"#{pk} is {status}" if status else f"#{pk} does not exist" for pk, status in skipped.items()]
    rest = len(named) - SKIPPED_NAMED
    return ", ".join(named[:SKIPPED_NAMED]) + (f" and {rest} more" if rest > 0 else "")


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
    verb = VERBS[verb_name]
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
        verb = VERBS[verb_name]
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


# --- The table ---------------------------------------------------------------------------------------

_NEEDS_A_PERSON = "DLQ or NEEDS_REVIEW"

VERBS: dict[str, OperatorVerb] = {
    verb.name: verb
    for verb in (
        _flag_verb(
            "pause",
            "Pause",
            "Stop claiming actions; ticks go on and are recorded as PAUSED",
            audit_verb="pause",
            permission=permissions.PAUSE_DAEMON,
            service=control.control_pause,
            outcome="stop claiming actions",
            flag=("paused", True),
            cli="aol_control pause",
        ),
        _flag_verb(
            "resume",
            "Resume",
            "Claim actions again",
            audit_verb="resume",
            permission=permissions.PAUSE_DAEMON,
            service=control.control_resume,
            outcome="claim actions again",
            flag=("paused", False),
            cli="aol_control resume",
        ),
        _flag_verb(
            "kill",
            "Kill",
            "Make every daemon release the lease and exit; new ones exit at their first tick",
            audit_verb="kill",
            permission=permissions.KILL_DAEMON,
            service=control.control_kill,
            outcome="release the lease and exit",
            flag=("killed", True),
            confirm=CONFIRM_TICK,
            danger=True,
            cli="aol_control kill",
        ),
        _flag_verb(
            "revive",
            "Revive",
            "Clear the kill flag so daemons may run again; it does not start one",
            audit_verb="revive",
            permission=permissions.KILL_DAEMON,
            service=control.control_revive,
            outcome="be allowed to run again",
            flag=("killed", False),
            cli="aol_control revive",
        ),
        # Back to PROOF is the safe direction: whoever may pause may do it. REAL needs its own permission.
        _flag_verb(
            "proof",
            "Switch to PROOF",
            "Adapters write PROOF artifacts; nothing acts on the world",
            audit_verb="switch to PROOF",
            permission=permissions.PAUSE_DAEMON,
            service=control.control_set_proof_mode,
            service_kwargs=MappingProxyType({"enabled": True}),
            outcome="run actions in PROOF",
            flag=("proof_mode", True),
            cli="aol_control proof on",
        ),
        _flag_verb(
            "real",
            "Switch to REAL",
            "Actions act on the world for real",
            audit_verb="switch to REAL",
            permission=permissions.SWITCH_MODE,
            service=control.control_set_proof_mode,
            service_kwargs=MappingProxyType({"enabled": False}),
            outcome="run actions for real",
            flag=("proof_mode", False),
            confirm=CONFIRM_TYPE_REAL,
            danger=True,
            cli="aol_control proof off",
        ),
        _type_verb(
            "pause_type",
            "Pause type",
            description="Stop claiming actions of one type; the others go on",
            audit_verb="pause type",
            service=control.control_pause_type,
            outcome="paused: no new action of it starts",
            slug="pause",
            cli="aol_control pause --type TYPE",
        ),
        _type_verb(
            "resume_type",
            "Resume type",
            description="Claim actions of a paused type again",
            audit_verb="resume type",
            service=control.control_resume_type,
            outcome="resumed",
            slug="resume",
            cli="aol_control resume --type TYPE",
        ),
        _action_verb(
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
        _action_verb(
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
        _action_verb(
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
        _action_verb(
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
        _action_verb(
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
}


def verb_for_console(*, group: str, slug: str) -> OperatorVerb | None:
    return next((verb for verb in VERBS.values() if verb.console == group and verb.slug == slug), None)


def verbs_where(**wanted: Any) -> list[OperatorVerb]:
    """The verbs whose fields have the ``wanted`` values, in table order: ``verbs_where(console="dlq")``."""
    return [verb for verb in VERBS.values() if all(getattr(verb, name) == value for name, value in wanted.items())]


def flag_verb(*, flag: str, value: bool) -> OperatorVerb:
    """The verb that sets control flag ``flag`` to ``value``."""
    return next(verb for verb in VERBS.values() if verb.flag == (flag, value))


# --- Running a verb, as every interface does -----------------------------------------------------------


@dataclass(frozen=True)
class OperatorResult:
    verb: OperatorVerb
    changed: bool
    message: str  # "done (paused=True, killed=False, mode=PROOF)", "3 actions retried; …"
    report: BulkReport | None = None


def operator_run(
    *, verb: OperatorVerb, actor: str, reason: str, user_id: int | None = None, via: str = "", **params: Any
) -> OperatorResult:
    """Run ``verb`` through its service; with ``user_id``, also record it in Django's admin log.

    Raises what the service raises (nothing is written then).
    """
    result = verb.call(actor=actor, reason=reason, **params)
    objects: list[models.Model] = []
    report: BulkReport | None = None
    if verb.target == ACTIONS:
        report = result
        changed, message = bool(result.changed), result.summary()
        if user_id is not None:
            objects = list(Action.objects.filter(pk__in=result.changed))
    elif verb.target == FLAGS:
        flags, changed = result
        message = f"{'done' if changed else 'it already was so; nothing changed'} ({_flags_summary(flags)})."
        objects = [flags]
    else:
        _, changed = result
        name = params["action_type"]
        message = f"done ({name} {verb.outcome})." if changed else f"it already was so; nothing changed ({name})."
    if user_id is not None and objects:
        admin_log_write(
            user_id=user_id,
            objects=objects,
            message=f"{verb.audit_verb} from {via}{'' if changed else ' (no change)'}: {message} Reason: {reason}",
        )
    return OperatorResult(verb=verb, changed=changed, message=message, report=report)


def operator_denied(*, verb: OperatorVerb, actor: str, reason: str, target: str = "") -> None:
    """Record an attempt by someone without the verb's permission (nothing else is written)."""
    audit_denied(
        actor=actor, verb=verb.audit_verb, permission=verb.permission, reason=reason, target=target or verb.target
    )


def _flags_summary(flags: ControlFlags) -> str:
    return f"paused={flags.paused}, killed={flags.killed}, mode={'PROOF' if flags.proof_mode else 'REAL'}"
