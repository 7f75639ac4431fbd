"""The one writer of aol_execution_logs (append-only)."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from orchestration.models import ExecutionLog, LogLevel
from orchestration.services.sql import log_insert_many


def log_entry(
    *,
    message: str,
    level: str = LogLevel.INFO,
    action_id: int | None = None,
    actor: str = "",
    artifact_ref: str = "",
    artifact_sha256: str = "",
    ts: datetime | None = None,
) -> ExecutionLog:
    """Build (do not save) one log row; ``ts`` is when it happened (default: when it is written)."""
    return ExecutionLog(
        action_id=action_id,
        # None until written: save() (auto_now_add) or log_write_many sets it; the stubs allow no None here.
        ts=ts,  # type: ignore[misc]
        level=level,
        message=message,
        actor=actor[:255],
        artifact_ref=artifact_ref,
        artifact_sha256=artifact_sha256,
    )


def log_write(**fields: Any) -> ExecutionLog:
    """Append one log row; takes the keyword arguments of ``log_entry``."""
    entry = log_entry(**fields)
    entry.save(force_insert=True)
    return entry


def log_write_many(entries: Iterable[ExecutionLog]) -> list[ExecutionLog]:
    """Append several log rows, a few hundred per INSERT (``log_insert_many``); the rows get no ``pk`` back."""
    entries = list(entries)
    if not entries:
        return entries
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    rows = []
    for entry in entries:
        entry.ts = entry.ts or now
        rows.append(
            (
                entry.action_id,
                adapt(entry.ts),
                entry.level,
                entry.message,
                entry.actor,
                entry.artifact_ref,
                entry.artifact_sha256,
            )
        )
    log_insert_many(rows=rows)
    return entries
