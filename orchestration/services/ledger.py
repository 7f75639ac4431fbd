"""The one writer of aol_tick_ledger (append-only), fenced on the lease token."""

from datetime import datetime

from django.db import connection

from orchestration.models import Lease, TickLedger


def tick_record(
    *,
    started_at: datetime,
    finished_at: datetime,
    status: str,
    attempted: int,
    succeeded: int,
    owner: str,
    token: int,
    notes: str = "",
    queue_depth: dict[str, int] | None = None,
) -> bool:
    """Append a tick row if ``token`` is still the lease's current token; False if fenced out.

    A single INSERT … SELECT … WHERE EXISTS, so the check and the write cannot be separated by
    another daemon's acquisition. (The ORM has no conditional insert.)
    """
    ledger, lease = TickLedger._meta.db_table, Lease._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    depth = TickLedger._meta.get_field("queue_depth").get_db_prep_save(queue_depth or {}, connection)
    # A bare parameter in a SELECT list is typed text on PostgreSQL, which does not cast to jsonb
    # on its own (it would in VALUES).
    depth_placeholder = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ledger} (started_at, finished_at, status, actions_attempted, actions_succeeded,"
            f" owner, lease_token, notes, queue_depth) SELECT %s, %s, %s, %s, %s, %s, %s, %s, {depth_placeholder}"
            f" WHERE EXISTS (SELECT 1 FROM {lease} WHERE id = %s AND token = %s)",
            [
                adapt(started_at),
                adapt(finished_at),
                status,
                attempted,
                succeeded,
                owner,
                token,
                notes,
                depth,
                Lease.SINGLETON_ID,
                token,
            ],
        )
        return cursor.rowcount == 1
