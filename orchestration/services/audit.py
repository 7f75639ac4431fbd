"""The one writer of the operator audit trail (aol_audit_log, append-only) and of Django's admin log
for console changes."""

import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import models

from orchestration.models import AuditEntry, AuditOutcome

logger = logging.getLogger("orchestration")

MAX_TARGET_LENGTH = 255


def audit_write(
    *,
    actor: str,
    verb: str,
    outcome: str,
    reason: str = "",
    target: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit row: who (``actor``), what (``verb`` on ``target``), ``before`` → ``after``, why."""
    entry = AuditEntry(
        actor=actor[:255],
        verb=verb[:64],
        outcome=outcome,
        reason=reason,
        target=target[:MAX_TARGET_LENGTH],
        before=before or {},
        after=after or {},
    )
    entry.save(force_insert=True)
    return entry


def audit_denied(*, actor: str, verb: str, permission: str, reason: str = "", target: str = "") -> AuditEntry:
    """Record a refused attempt: the actor lacked ``permission``; nothing changed."""
    logger.warning("denied verb=%r actor=%s missing_permission=%s", verb, actor, permission)
    return audit_write(
        actor=actor,
        verb=verb,
        outcome=AuditOutcome.DENIED,
        reason=reason[:500],
        target=target,
        after={"missing_permission": permission},
    )


def admin_log_write(*, user_id: int, objects: Iterable[models.Model], message: str, flag: int = CHANGE) -> None:
    """Also record a change in Django's admin log (the admin's "Recent actions" and object history)."""
    objects = list(objects)
    if objects:
        LogEntry.objects.log_actions(user_id=user_id, queryset=objects, action_flag=flag, change_message=message)


def describe_ids(ids: list[int], *, noun: str = "action") -> str:
    """``'3 actions: #1, #2, #5'``, cut to fit the audit's target column."""
    if not ids:
        return f"no {noun}s"
    label = f"{len(ids)} {noun}{'' if len(ids) == 1 else 's'}: "
    listed = ", ".join(f"#{pk}" for pk in ids)
    text = label + listed
    if len(text) > MAX_TARGET_LENGTH:
        text = text[: MAX_TARGET_LENGTH - 1].rsplit(",", 1)[0] + ", …"
    return text
