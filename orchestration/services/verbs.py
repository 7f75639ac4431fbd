"""What operators may do, in one table: the verbs on actions, per action type, and on the control flags.

``VERBS`` is the single description of every operator verb: its permission, the service it calls,
the statuses it acts on, what a request naming several actions does, the texts the admin, the
console and the commands show, and where each verb is offered. Those interfaces read it; none keeps
a list of its own. The per-type pause and the control flags keep their services in
``services/control.py``; the verbs on actions are in ``services/operator.py``.
"""

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from django.db import models

from orchestration import permissions
from orchestration.models import (
    Action,
    ControlFlags,
)
from orchestration.services import control
from orchestration.services.audit import admin_log_write, audit_denied
from orchestration.services.operator import ACTION_VERBS, BulkReport
from orchestration.services.operator_verb import (
    ACTION_TYPE,
    ACTIONS,
    BULK_SINGLE,
    CONFIRM_TICK,
    CONFIRM_TYPE_REAL,
    CONSOLE_FLAGS,
    CONSOLE_TYPES,
    FLAGS,
    OperatorVerb,
)
from orchestration.services.retract import RETRACT_VERB


def _flag_verb(
    name: str, label: str, description: str, *, audit_verb: str, permission: str, **fields: Any
) -> OperatorVerb:
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


def _type_verb(name: str, label: str, **fields: Any) -> OperatorVerb:
    return OperatorVerb(
        name=name,
        label=label,
        permission=permissions.PAUSE_DAEMON,
        target=ACTION_TYPE,
        bulk=BULK_SINGLE,
        console=CONSOLE_TYPES,
        **fields,
    )


# --- The table ---------------------------------------------------------------------------------------

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
        *ACTION_VERBS,
        RETRACT_VERB,
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
