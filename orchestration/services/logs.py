"""The one writer of aol_execution_logs (append-only)."""

from collections.abc import Iterable

from orchestration.models import ExecutionLog, LogLevel


def log_entry(
    *,
    message: str,
    level: str = LogLevel.INFO,
    action_id: int | None = None,
    actor: str = "",
    artifact_ref: str = "",
    artifact_sha256: str = "",
) -> ExecutionLog:
    """Build (do not save) one log row."""
    return ExecutionLog(
        action_id=action_id,
        level=level,
        message=message,
        actor=actor[:255],
        artifact_ref=artifact_ref,
        artifact_sha256=artifact_sha256,
    )


def log_write(**fields) -> ExecutionLog:
    """Append one log row; takes the keyword arguments of ``log_entry``."""
    entry = log_entry(**fields)
    entry.save(force_insert=True)
    return entry


def log_write_many(entries: Iterable[ExecutionLog]) -> list[ExecutionLog]:
    """Append several log rows in one statement."""
    return ExecutionLog.objects.bulk_create(list(entries))
