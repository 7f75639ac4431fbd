"""Operator control flags: pause, resume, kill, revive, PROOF/REAL.

Every change names an actor and a reason and is written to the execution log (action id empty)
and to the operator audit trail (before → after) in the same transaction, so the log always
explains the flags' current values.
"""

import logging

from django.db import IntegrityError, transaction

from orchestration.exceptions import ControlChangeRejected
from orchestration.models import ActionTypePause, AuditOutcome, ControlFlags, LogLevel
from orchestration.services.audit import audit_write
from orchestration.services.logs import log_write

logger = logging.getLogger("orchestration")

MAX_REASON_LENGTH = 500


def control_flags_get() -> ControlFlags:
    """The flags row, created with safe defaults (PROOF on, not paused, not killed) if missing."""
    flags = ControlFlags.objects.filter(pk=ControlFlags.SINGLETON_ID).first()
    if flags is None:
        try:
            with transaction.atomic():
                flags = ControlFlags.objects.create(pk=ControlFlags.SINGLETON_ID)
        except IntegrityError:
            flags = ControlFlags.objects.get(pk=ControlFlags.SINGLETON_ID)
    return flags


def operator_reason_clean(*, reason: str, actor: str, verb: str) -> str:
    """The stripped reason; ControlChangeRejected when it or the actor is missing, or it is too long."""
    reason = (reason or "").strip()
    if not reason:
        raise ControlChangeRejected(f"A reason is required to {verb}.")
    if len(reason) > MAX_REASON_LENGTH:
        raise ControlChangeRejected(f"The reason is {len(reason)} characters long; the limit is {MAX_REASON_LENGTH}.")
    if not actor:
        raise ControlChangeRejected("An actor (who is making this change) is required.")
    return reason


def _control_change(*, verb: str, changes: dict[str, bool], actor: str, reason: str) -> tuple[ControlFlags, bool]:
    reason = operator_reason_clean(reason=reason, actor=actor, verb=f"{verb} the daemon")
    control_flags_get()  # make sure the row exists before locking it
    with transaction.atomic():
        flags = ControlFlags.objects.select_for_update().get(pk=ControlFlags.SINGLETON_ID)
        before = {name: getattr(flags, name) for name in changes}
        changed = before != changes
        if changed:
            for name, value in changes.items():
                setattr(flags, name, value)
            flags.updated_by = actor[:150]
            flags.save(update_fields=[*changes, "updated_at", "updated_by"])
        transitions = ", ".join(f"{name} {before[name]} → {value}" for name, value in changes.items())
        log_write(
            level=LogLevel.WARNING if verb in ("kill", "switch to REAL") else LogLevel.INFO,
            message=f"{verb} by {actor}: {transitions}{'' if changed else ' (no change)'}; reason: {reason}",
            actor=actor,
        )
        audit_write(
            actor=actor,
            verb=verb,
            outcome=AuditOutcome.DONE if changed else AuditOutcome.NO_CHANGE,
            reason=reason,
            target="control flags",
            before=before,
            after=changes,
        )
    logger.info("control verb=%r actor=%s changed=%s reason=%r", verb, actor, changed, reason)
    return flags, changed


def control_pause(*, actor: str, reason: str) -> tuple[ControlFlags, bool]:
    """Stop claiming actions; ticks go on and are recorded as PAUSED."""
    return _control_change(verb="pause", changes={"paused": True}, actor=actor, reason=reason)


def control_resume(*, actor: str, reason: str) -> tuple[ControlFlags, bool]:
    return _control_change(verb="resume", changes={"paused": False}, actor=actor, reason=reason)


def control_kill(*, actor: str, reason: str) -> tuple[ControlFlags, bool]:
    """Make every daemon release the lease and exit; new daemons exit at their first tick."""
    return _control_change(verb="kill", changes={"killed": True}, actor=actor, reason=reason)


def control_revive(*, actor: str, reason: str) -> tuple[ControlFlags, bool]:
    """Clear the kill flag so daemons may run again (it does not start one)."""
    return _control_change(verb="revive", changes={"killed": False}, actor=actor, reason=reason)


def control_set_proof_mode(*, enabled: bool, actor: str, reason: str) -> tuple[ControlFlags, bool]:
    verb = "switch to PROOF" if enabled else "switch to REAL"
    return _control_change(verb=verb, changes={"proof_mode": enabled}, actor=actor, reason=reason)


# --- Pause per action type (docs/flow-control.md) ---------------------------------------------------------


def control_paused_types() -> list[ActionTypePause]:
    """The paused action types, oldest pause first."""
    return list(ActionTypePause.objects.order_by("paused_at", "action_type"))


def control_pause_type(*, action_type: str, actor: str, reason: str) -> tuple[ActionTypePause, bool]:
    """Stop claiming actions of one type (the others go on); returns ``(pause, changed)``. Audited.

    ControlChangeRejected, with nothing written, for an unknown action type or a missing reason.
    A pause already in place is kept as it is (who paused it and why).
    """
    from orchestration.adapters import adapters_all

    reason = operator_reason_clean(reason=reason, actor=actor, verb=f"pause {action_type}")
    known = adapters_all()
    if action_type not in known:
        raise ControlChangeRejected(
            f"Unknown action type {action_type!r}; known types: {', '.join(sorted(known))}. Nothing changed."
        )
    with transaction.atomic():
        pause, created = ActionTypePause.objects.get_or_create(
            action_type=action_type, defaults={"paused_by": actor[:255], "reason": reason}
        )
        log_write(
            level=LogLevel.INFO,
            message=f"pause type {action_type} by {actor}"
            + ("" if created else f" (no change: already paused by {pause.paused_by})")
            + f"; reason: {reason}",
            actor=actor,
        )
        audit_write(
            actor=actor,
            verb="pause type",
            outcome=AuditOutcome.DONE if created else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=f"action type {action_type}",
            before={"paused": not created},
            after={"paused": True},
        )
    logger.info("control verb='pause type' type=%s actor=%s changed=%s reason=%r", action_type, actor, created, reason)
    return pause, created


def control_resume_type(*, action_type: str, actor: str, reason: str) -> tuple[str, bool]:
    """Claim actions of ``action_type`` again; returns ``(action_type, changed)``. Audited.

    Any paused name can be resumed, even one whose adapter has since been removed.
    """
    from orchestration.adapters import adapters_all

    reason = operator_reason_clean(reason=reason, actor=actor, verb=f"resume {action_type}")
    with transaction.atomic():
        pause = ActionTypePause.objects.select_for_update().filter(action_type=action_type).first()
        if pause is None and action_type not in adapters_all():
            raise ControlChangeRejected(f"{action_type!r} is neither paused nor a known action type; nothing changed.")
        if pause is not None:
            pause.delete()
        changed = pause is not None
        log_write(
            level=LogLevel.INFO,
            message=f"resume type {action_type} by {actor}"
            + ("" if changed else " (no change: not paused)")
            + f"; reason: {reason}",
            actor=actor,
        )
        audit_write(
            actor=actor,
            verb="resume type",
            outcome=AuditOutcome.DONE if changed else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=f"action type {action_type}",
            before={
                "paused": changed,
                **({"paused_by": pause.paused_by, "paused_reason": pause.reason} if pause else {}),
            },
            after={"paused": False},
        )
    logger.info("control verb='resume type' type=%s actor=%s changed=%s reason=%r", action_type, actor, changed, reason)
    return action_type, changed
