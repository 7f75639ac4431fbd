"""Every statement in services/sql.py, run on the database under test (the suite runs on SQLite and on PostgreSQL)."""

from datetime import timedelta

import pytest
from django.db import connection, connections
from django.db.migrations.recorder import MigrationRecorder

from orchestration.dbclock import db_now
from orchestration.models import Action, ActionStatus, ExecutionLog, LogLevel, TickLedger
from orchestration.services.sql import (
    LOG_COLUMNS,
    action_insert_unless_key_taken,
    actions_insert_unless_keys_taken,
    database_bytes,
    log_insert_many,
    migrations_applied,
    status_statistics,
    table_rows_capped,
    table_sizes,
    table_statistics,
    tick_insert_if_token_current,
)
from tests.factories import OWNER, hold_lease

pytestmark = pytest.mark.django_db

POST = {"platform": "mastodon", "message": "hello"}


def _action(key: str) -> Action:
    return Action(idempotency_key=key, action_type="POST_SOCIAL", payload=POST)


def test_action_insert_unless_key_taken__inserts_once_and_reads_back_the_database_defaults():
    first = _action("k-1")
    assert action_insert_unless_key_taken(action=first) is True
    stored = Action.objects.get(idempotency_key="k-1")
    assert first.pk == stored.pk
    assert first.not_before == stored.not_before  # a column default of the database, read back
    assert stored.status == ActionStatus.PENDING and stored.payload == POST

    again = _action("k-1")
    assert action_insert_unless_key_taken(action=again) is False
    assert again.pk is None
    assert Action.objects.filter(idempotency_key="k-1").count() == 1


def test_actions_insert_unless_keys_taken__inserts_in_order_and_skips_taken_keys():
    Action.objects.create(idempotency_key="taken", action_type="POST_SOCIAL", payload=POST)
    later = db_now() + timedelta(hours=1)
    rows = [
        {
            "idempotency_key": key,
            "action_type": "POST_SOCIAL",
            "payload": POST,
            "priority": 0,
            "requires_approval": False,
        }
        for key in ("a", "taken", "b")
    ]
    rows[2].update(priority=5, requires_approval=True, not_before=later)
    now = db_now()
    ids = actions_insert_unless_keys_taken(rows=rows, now=now)
    assert list(ids) == ["a", "b"]
    assert ids["a"] < ids["b"]
    a, b = Action.objects.get(pk=ids["a"]), Action.objects.get(pk=ids["b"])
    assert (a.not_before, a.priority, a.requires_approval, a.payload) == (now, 0, False, POST)
    assert (b.not_before, b.priority, b.requires_approval) == (later, 5, True)
    assert a.created_at == now and a.status == ActionStatus.PENDING


def test_tick_insert_if_token_current__writes_under_the_current_token_only():
    token = hold_lease()
    kwargs = dict(status="OK", attempted=2, succeeded=1, owner=OWNER, notes="n", queue_depth={"PENDING": 3})
    assert tick_insert_if_token_current(duration_seconds=1.5, token=token, **kwargs) is True
    tick = TickLedger.objects.get()
    assert (tick.actions_attempted, tick.actions_succeeded, tick.queue_depth) == (2, 1, {"PENDING": 3})
    assert abs((tick.finished_at - tick.started_at).total_seconds() - 1.5) < 0.01
    assert abs((db_now() - tick.finished_at).total_seconds()) < 5

    assert tick_insert_if_token_current(duration_seconds=0, token=token + 1, **kwargs) is False
    assert TickLedger.objects.count() == 1


def test_log_insert_many__writes_every_row_across_statements():
    action = Action.objects.create(idempotency_key="logged", action_type="POST_SOCIAL", payload=POST)
    ts = connection.ops.adapt_datetimefield_value(db_now())
    rows = [(action.pk, ts, LogLevel.INFO, f"row {n}", "me", "", "") for n in range(1201)]
    assert len(rows[0]) == len(LOG_COLUMNS)
    log_insert_many(rows=rows)
    assert ExecutionLog.objects.filter(action_id=action.pk).count() == 1201
    assert ExecutionLog.objects.filter(message="row 1200", actor="me").exists()


def test_table_rows_capped__counts_up_to_the_cap():
    for n in range(3):
        Action.objects.create(idempotency_key=f"c-{n}", action_type="POST_SOCIAL", payload=POST)
    assert table_rows_capped(table=Action._meta.db_table, cap=2) == 2
    assert table_rows_capped(table=Action._meta.db_table, cap=10) == 3


def test_database_bytes__is_the_size_of_a_database_with_tables():
    size = database_bytes()
    assert isinstance(size, int) and size > 0


def test_migrations_applied__reads_the_recorder_on_the_given_connection():
    applied = migrations_applied(conn=connections["default"], table=MigrationRecorder.Migration._meta.db_table)
    assert ("orchestration", "0001_initial") in applied


@pytest.mark.postgres_only
def test_planner_statistics__read_after_analyze():
    for n in range(20):
        Action.objects.create(idempotency_key=f"s-{n}", action_type="POST_SOCIAL", payload=POST)
    table = Action._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
    reltuples, relpages, pages, values, frequencies = status_statistics(table=table)
    assert reltuples == 20 and pages >= 1
    assert values == ["PENDING"] and frequencies == [1.0]
    assert table_statistics(table=table)[0] == 20
    assert table_sizes(tables=[table])[table][0] == 20
    assert status_statistics(table="no_such_table") is None
    assert table_statistics(table="no_such_table") is None


def test_log_insert_many__keeps_each_rows_values_and_a_missing_action_id():
    action = Action.objects.create(idempotency_key="logged-2", action_type="POST_SOCIAL", payload=POST)
    ts = connection.ops.adapt_datetimefield_value(db_now())
    log_insert_many(
        rows=[
            (action.pk, ts, LogLevel.INFO, "done", "daemon", "post_social/a.txt", "a" * 64),
            (None, ts, LogLevel.WARNING, "no action", "operator", "", ""),
        ]
    )
    assert list(
        ExecutionLog.objects.order_by("id").values_list("action_id", "level", "message", "actor", "artifact_ref")
    ) == [
        (action.pk, LogLevel.INFO, "done", "daemon", "post_social/a.txt"),
        (None, LogLevel.WARNING, "no action", "operator", ""),
    ]
    assert ExecutionLog.objects.get(message="done").artifact_sha256 == "a" * 64


def test_pk_in_array__selects_exactly_the_ids_given_and_nothing_for_none():
    """The lookup the daemon fences its batches with: one array on PostgreSQL, IN on SQLite."""
    pks = [
        Action.objects.create(idempotency_key=f"arr-{n}", action_type="POST_SOCIAL", payload=POST).pk for n in range(5)
    ]
    assert sorted(Action.objects.filter(pk__in_array=[pks[0], pks[3], pks[3]]).values_list("pk", flat=True)) == [
        pks[0],
        pks[3],
    ]
    assert not Action.objects.filter(pk__in_array=[]).exists()
    assert Action.objects.filter(pk__in_array=[pks[1], pks[2]]).update(priority=5) == 2
    assert sorted(Action.objects.filter(priority=5).values_list("pk", flat=True)) == [pks[1], pks[2]]
