"""The one writer of aol_execution_logs (append-only)."""

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.utils import timezone

from orchestration.models import ExecutionLog, LogLevel

#: The columns ``log_write_many`` fills, in order (``id`` comes from the database).
_COLUMNS = ("action_id", "ts", "level", "message", "actor", "artifact_ref", "artifact_sha256")


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
        ts=ts,
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
    """Append several log rows, a few hundred per INSERT statement; the rows get no ``pk`` back.

    A plain multi-row INSERT instead of ``bulk_create``: the daemon writes one row per action, and
    compiling every field of every row through the ORM cost more than the statement itself.
    """
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
    quote = connection.ops.quote_name
    max_params = connection.features.max_query_params or 65535  # None on PostgreSQL: no set limit
    per_statement = max(1, min(500, max_params // len(_COLUMNS)))
    head = f"INSERT INTO {quote(ExecutionLog._meta.db_table)} ({', '.join(map(quote, _COLUMNS))}) VALUES "
    one = f"({', '.join(['%s'] * len(_COLUMNS))})"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cursor.execute(head + ", ".join([one] * len(chunk)), [value for row in chunk for value in row])
    return entries
