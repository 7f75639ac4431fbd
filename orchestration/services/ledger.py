"""The one writer of aol_tick_ledger (append-only), fenced on the lease token."""

from orchestration.services.sql import tick_insert_if_token_current


def tick_record(
    *,
    duration_seconds: float,
    status: str,
    attempted: int,
    succeeded: int,
    owner: str,
    token: int,
    notes: str = "",
    queue_depth: dict[str, int] | None = None,
) -> bool:
    """Append a tick row if ``token`` is still the lease's current token; False if fenced out.

    The tick finishes now by the database's clock and started ``duration_seconds`` (measured on the
    daemon's monotonic clock) before, so tick times and their age never depend on the daemon host's
    wall clock. One conditional INSERT (``tick_insert_if_token_current``), so the check and the
    write cannot be separated by another daemon's acquisition.
    """
    return tick_insert_if_token_current(
        duration_seconds=duration_seconds,
        status=status,
        attempted=attempted,
        succeeded=succeeded,
        owner=owner,
        token=token,
        notes=notes,
        queue_depth=queue_depth or {},
    )
