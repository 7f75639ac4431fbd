"""The one writer of aol_tick_ledger (append-only), fenced on the lease token."""

from django.db import connection

from orchestration.dbclock import SQLITE_NOW
from orchestration.models import Lease, TickLedger


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
    wall clock. A single INSERT … SELECT … WHERE EXISTS, so the check and the write cannot be
    separated by another daemon's acquisition. (The ORM has no conditional insert.)
    """
    ledger, lease = TickLedger._meta.db_table, Lease._meta.db_table
    depth = TickLedger._meta.get_field("queue_depth").get_db_prep_save(queue_depth or {}, connection)
    if connection.vendor == "postgresql":
        finished = "STATEMENT_TIMESTAMP()"
        started = f"{finished} - make_interval(secs => %s)"
        # A bare parameter in a SELECT list is typed text on PostgreSQL, which does not cast to jsonb
        # on its own (it would in VALUES).
        depth_placeholder = "%s::jsonb"
        duration = max(0.0, duration_seconds)
    else:
        finished = SQLITE_NOW.replace("%", "%%")
        started = finished.replace("'NOW'", "'NOW', %s")
        depth_placeholder = "%s"
        duration = f"-{max(0.0, duration_seconds):.6f} seconds"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ledger} (started_at, finished_at, status, actions_attempted, actions_succeeded,"
            f" owner, lease_token, notes, queue_depth) SELECT {started}, {finished}, %s, %s, %s, %s, %s, %s,"
            f" {depth_placeholder} WHERE EXISTS (SELECT 1 FROM {lease} WHERE id = %s AND token = %s)",
            [duration, status, attempted, succeeded, owner, token, notes, depth, Lease.SINGLETON_ID, token],
        )
        return cursor.rowcount == 1
