"""Every statement the ORM cannot say, in one place; each function's docstring gives the reason.

The callers keep their public functions (``action_enqueue``, ``tick_record``, ``log_write_many`` …)
and hand the statement what it needs; tests/services/test_sql.py runs each one on SQLite and on
PostgreSQL.
"""

import json
from datetime import datetime
from functools import cache
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import DatabaseDefault

from orchestration.dbclock import SQLITE_NOW
from orchestration.models import Action, ExecutionLog, Lease, TickLedger

# --- Actions: enqueue without an error on a taken key ---------------------------------------------------


def action_insert_unless_key_taken(*, action: Action) -> bool:
    """INSERT ``action`` unless its idempotency key is taken; True (and its pk set) if it was inserted.

    One statement on PostgreSQL and SQLite (3.35+): INSERT … ON CONFLICT (idempotency_key) DO
    NOTHING RETURNING. A taken key is not an error, so it needs no transaction of its own to
    recover from; the ORM's create() has no such clause, and bulk_create(ignore_conflicts=True)
    does not return the new id. Values are prepared by each field as the ORM's INSERT prepares them.
    """
    db = connections[DEFAULT_DB_ALIAS]  # the connection itself: the proxy costs a look-up per attribute
    meta = Action._meta
    columns, params, returning = [], [], [meta.pk]
    for model_field in meta.concrete_fields:
        if model_field.primary_key:
            continue
        value = model_field.pre_save(action, add=True)
        if isinstance(value, DatabaseDefault):
            returning.append(model_field)  # left to the database (not_before: its clock); read back below
            continue
        columns.append(model_field.column)
        params.append(model_field.get_db_prep_save(value, db))
    sql = _action_insert_sql(db.vendor, tuple(columns), tuple(f.column for f in returning))
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    for model_field, value in zip(returning, row, strict=True):
        column = model_field.get_col(meta.db_table)
        for converter in [*db.ops.get_db_converters(column), *model_field.get_db_converters(db)]:
            value = converter(value, column, db)
        setattr(action, model_field.attname, value)
    action._state.adding, action._state.db = False, db.alias
    return True


@cache
def _action_insert_sql(vendor: str, columns: tuple[str, ...], returning: tuple[str, ...]) -> str:
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return (
        f"INSERT INTO {quote(Action._meta.db_table)} ({', '.join(map(quote, columns))})"
        f" VALUES ({', '.join(['%s'] * len(columns))})"
        f" ON CONFLICT ({quote(cast(str, Action._meta.get_field('idempotency_key').column))}) DO NOTHING"
        f" RETURNING {', '.join(map(quote, returning))}"
    )


# --- Actions: bulk enqueue in one statement --------------------------------------------------------------


#: How each database unpacks the batch's JSON document (one parameter) into rows, in input order:
#: the FROM clause, how a row reads an item's key, type, payload, priority, approval and not_before, and
#: how a parameter for a column default is written.
_ROWS_FROM_JSON: dict[str, dict[str, str]] = {
    "postgresql": {
        "from": "jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(item, n) ORDER BY e.n",
        "k": "e.item->>'k'",
        "t": "e.item->>'t'",
        "p": "e.item->'p'",
        "nb": "(e.item->>'nb')::timestamptz",
        "pr": "(e.item->>'pr')::smallint",
        "ra": "(e.item->>'ra')::boolean",
        # A bare parameter in a SELECT list is typed text (a NULL too), so it is cast to its column's type.
        "param": "CAST(%s AS {type})",
    },
    "sqlite": {
        # WHERE true: SQLite's parser needs it to read the ON CONFLICT that follows as the upsert clause.
        "from": "json_each(%s) WHERE true ORDER BY key",
        "k": "json_extract(value, '$.k')",
        "t": "json_extract(value, '$.t')",
        "p": "json_extract(value, '$.p')",
        "nb": "json_extract(value, '$.nb')",
        "pr": "json_extract(value, '$.pr')",
        "ra": "json_extract(value, '$.ra')",
        "param": "%s",
    },
}
#: Which item field fills which column; every other column gets the model's default.
_ITEM_COLUMNS = {
    "idempotency_key": "k",
    "action_type": "t",
    "payload": "p",
    "priority": "pr",
    "requires_approval": "ra",
}


def actions_insert_unless_keys_taken(*, rows: list[dict[str, Any]], now: datetime) -> dict[str, int]:
    """INSERT ``rows`` in one statement, skipping keys already taken; ``{key: id}`` of the rows inserted.

    The rows travel as one JSON document that the database unpacks (INSERT … SELECT … FROM
    jsonb_array_elements / json_each … ON CONFLICT (idempotency_key) DO NOTHING RETURNING): one
    parameter instead of one per column and row, which both drivers would quote value by value,
    and no error when another writer holds a key, so the caller looks that one up instead of
    retrying the batch. Ids follow input order. Column defaults are prepared once per batch, as
    the ORM prepares them.
    """
    db = connections[DEFAULT_DB_ALIAS]
    read = _ROWS_FROM_JSON[db.vendor]
    adapt = db.ops.adapt_datetimefield_value
    columns, values, params = [], [], []
    for model_field in Action._meta.concrete_fields:
        if model_field.primary_key:
            continue
        if model_field.attname in _ITEM_COLUMNS:
            value_sql = read[_ITEM_COLUMNS[model_field.attname]]
        elif model_field.attname == "not_before":
            value_sql = f"COALESCE({read['nb']}, {read['param'].format(type=model_field.cast_db_type(db))})"
            params.append(model_field.get_db_prep_save(now, db))
        else:
            auto = getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False)
            default = now if auto else model_field.get_default()
            if isinstance(default, DatabaseDefault):
                continue  # left to the database
            value_sql = read["param"].format(type=model_field.cast_db_type(db))
            params.append(model_field.get_db_prep_save(default, db))
        columns.append(db.ops.quote_name(cast(str, model_field.column)))  # a concrete field always has a column
        values.append(value_sql)
    document = json.dumps(
        [
            {
                "k": row["idempotency_key"],
                "t": row["action_type"],
                "p": row["payload"],
                "pr": row["priority"],
                "ra": row["requires_approval"],
                **({"nb": str(adapt(row["not_before"]))} if row.get("not_before") is not None else {}),
            }
            for row in rows
        ]
    )
    quote = db.ops.quote_name
    sql = (
        f"INSERT INTO {quote(Action._meta.db_table)} ({', '.join(columns)})"
        f" SELECT {', '.join(values)} FROM {read['from']}"
        f" ON CONFLICT ({quote('idempotency_key')}) DO NOTHING RETURNING {quote('id')}, {quote('idempotency_key')}"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, [*params, document])
        return {key: pk for pk, key in cursor.fetchall()}


# --- The tick ledger: a row only while the lease is ours ------------------------------------------------


def tick_insert_if_token_current(
    *,
    duration_seconds: float,
    status: str,
    attempted: int,
    succeeded: int,
    owner: str,
    token: int,
    notes: str,
    queue_depth: dict[str, int],
) -> bool:
    """INSERT one tick row if ``token`` is still the lease's token; False if fenced out.

    A single INSERT … SELECT … WHERE EXISTS, so the check and the write cannot be separated by
    another daemon's acquisition; the ORM has no conditional insert. Times are the database's:
    finished now, started ``duration_seconds`` before.
    """
    ledger, lease = TickLedger._meta.db_table, Lease._meta.db_table
    depth = TickLedger._meta.get_field("queue_depth").get_db_prep_save(queue_depth, connection)
    if connection.vendor == "postgresql":
        finished = "STATEMENT_TIMESTAMP()"
        started = f"{finished} - make_interval(secs => %s)"
        # A bare parameter in a SELECT list is typed text on PostgreSQL, which does not cast to jsonb
        # on its own (it would in VALUES).
        depth_placeholder = "%s::jsonb"
        duration: float | str = max(0.0, duration_seconds)
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


# --- Execution logs: many rows in few statements ---------------------------------------------------------

#: The columns ``log_insert_many`` fills, in order (``id`` comes from the database).
LOG_COLUMNS = ("action_id", "ts", "level", "message", "actor", "artifact_ref", "artifact_sha256")
#: PostgreSQL: every row in one statement, one array per column (the casts name each column's type).
_LOG_INSERT_UNNEST_SQL = (
    f"INSERT INTO {ExecutionLog._meta.db_table} ({', '.join(LOG_COLUMNS)})"
    " SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::varchar[], %s::text[], %s::varchar[],"
    " %s::varchar[], %s::varchar[])"
)


def log_insert_many(*, rows: list[tuple[Any, ...]]) -> None:
    """INSERT execution-log rows (values in LOG_COLUMNS order, ready for the database), a few hundred per statement.

    A plain multi-row INSERT instead of ``bulk_create``: the daemon writes one row per action, and
    compiling every field of every row through the ORM cost more than the statement itself. On
    PostgreSQL all rows go in one statement of fixed text, ``INSERT … SELECT FROM unnest(<one array
    per column>)``: seven parameters whatever the number of rows, where a VALUES list has seven per
    row, which psycopg (binding client-side, Django's default) re-parses for every new length.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_LOG_INSERT_UNNEST_SQL, [list(column) for column in zip(*rows, strict=True)])
        return
    quote = connection.ops.quote_name
    max_params = connection.features.max_query_params or 65535  # None on PostgreSQL: no set limit
    per_statement = max(1, min(500, max_params // len(LOG_COLUMNS)))
    head = f"INSERT INTO {quote(ExecutionLog._meta.db_table)} ({', '.join(map(quote, LOG_COLUMNS))}) VALUES "
    one = f"({', '.join(['%s'] * len(LOG_COLUMNS))})"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cursor.execute(head + ", ".join([one] * len(chunk)), [value for row in chunk for value in row])


# --- PostgreSQL's planner statistics: sizes without counting -------------------------------------------

#: The table's size now (reltuples scaled to its current pages, as the planner does) and the
#: frequency of each status in the last ANALYZE's sample.
STATUS_STATISTICS_SQL = """
SELECT c.reltuples, c.relpages, pg_relation_size(c.oid) / current_setting('block_size')::int,
       s.most_common_vals::text::text[], s.most_common_freqs
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'status'
                        AND NOT s.inherited
WHERE c.oid = to_regclass(%s)
"""
TABLE_ROWS_SQL = """
SELECT c.reltuples, c.relpages, pg_relation_size(c.oid) / current_setting('block_size')::int
FROM pg_class c WHERE c.oid = to_regclass(%s)
"""


def status_statistics(*, table: str) -> tuple[float, int, int, list[str] | None, list[float] | None] | None:
    """PostgreSQL only: ``(reltuples, relpages, pages now, status values, their frequencies)`` of ``table``.

    The planner's statistics live in the pg_class and pg_stats catalogues, which the ORM cannot
    query; None when there is no such table.
    """
    with connection.cursor() as cursor:
        cursor.execute(STATUS_STATISTICS_SQL, [table])
        return cursor.fetchone()


def table_statistics(*, table: str) -> tuple[float, int, int] | None:
    """PostgreSQL only: ``(reltuples, relpages, pages now)`` of ``table`` from the pg_class catalogue, or None."""
    with connection.cursor() as cursor:
        cursor.execute(TABLE_ROWS_SQL, [table])
        return cursor.fetchone()


def table_sizes(*, tables: list[str]) -> dict[str, tuple[int, int]]:
    """PostgreSQL only: ``{table: (estimated rows, bytes on disk with indexes)}`` from pg_class.

    Sizes on disk exist only in the catalogue functions (pg_total_relation_size); a table never
    analysed shows -1 rows.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c "
            "WHERE c.relname = ANY(%s) AND c.relkind = 'r' AND pg_table_is_visible(c.oid)",
            [tables],
        )
        return {name: (rows, size) for name, rows, size in cursor.fetchall()}


def table_rows_capped(*, table: str, cap: int) -> int:
    """The rows of ``table``, counted up to ``cap``: a COUNT over a LIMITed subquery, which the ORM
    cannot write for a table it names by string, and which stops early on a big table."""
    quoted = connection.ops.quote_name(table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {quoted} LIMIT %s) AS capped", [cap])
        return cursor.fetchone()[0]


def database_bytes() -> int | None:
    """The size of the whole database in bytes (pg_database_size, or SQLite's pages); None elsewhere.

    Both come from the database engine itself, not from any table.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_database_size(current_database())")
            return cursor.fetchone()[0]
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute("PRAGMA page_size")
            return pages * cursor.fetchone()[0]
    return None


# --- Migrations, read on a private connection ------------------------------------------------------------


def migrations_applied(*, conn: BaseDatabaseWrapper, table: str) -> set[tuple[str, str]]:
    """``{(app, name)}`` of the migrations recorded in ``table``, read on ``conn``.

    Raw SQL because the recorder's ORM queries would go through the alias's shared connection,
    and the health probe must use its own (with its own timeout).
    """
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT app, name FROM {conn.ops.quote_name(table)}")
        return set(cursor.fetchall())
