"""Operator control flags: pause, resume, kill, revive, PROOF/REAL.

Every change names an actor and a reason and is written to the execution log (action id empty)
and to the operator audit trail (before → after) in the same transaction, so the log always
explains the flags' current values.
"""

import logging

from django.db import IntegrityError, transaction

from orchestration.exceptions import ControlChangeRejected
from orchestration.models import AuditOutcome, ControlFlags, LogLevel
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
