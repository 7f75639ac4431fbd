"""The status snapshot's queue counts: open statuses exact, large finished ones an estimate that says so."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestration.models import ActionStatus
from orchestration.services import status
from orchestration.services.status import action_status_counts, estimate_round, status_snapshot
from tests.console_fixtures import actions_with_status

pytestmark = pytest.mark.django_db


def test_action_status_counts__every_status_exact_and_none_estimated_below_the_limit(analyse):
    actions_with_status(ActionStatus.SUCCESS, 3)
    actions_with_status(ActionStatus.DLQ, 2)
    actions_with_status(ActionStatus.PENDING, 1)
    analyse()
    counts, estimated = action_status_counts()
    assert estimated == []
    assert counts == {s: 0 for s in ActionStatus.values} | {"SUCCESS": 3, "DLQ": 2, "PENDING": 1}
    snapshot = status_snapshot()
    assert (snapshot["counts_estimated"], snapshot["counts_note"]) == ([], "")


@pytest.mark.postgres_only
def test_action_status_counts__large_finished_status_is_a_labelled_estimate_open_ones_stay_exact(analyse, monkeypatch):
    monkeypatch.setattr(status, "EXACT_COUNT_LIMIT", 10)
    actions_with_status(ActionStatus.SUCCESS, 30)
    actions_with_status(ActionStatus.FAILED, 2)
    actions_with_status(ActionStatus.PENDING, 3)
    analyse()
    # Written after the statistics were taken: exact counts see them, the estimate cannot.
    actions_with_status(ActionStatus.PENDING, 20)
    actions_with_status(ActionStatus.DLQ, 4)
    with CaptureQueriesContext(connection) as queries:
        counts, estimated = action_status_counts()
    assert estimated == ["SUCCESS"]
    assert (counts["PENDING"], counts["DLQ"], counts["FAILED"], counts["RUNNING"]) == (23, 4, 2, 0)
    assert 15 <= counts["SUCCESS"] <= 90  # about 30: the statistics' share of the table's current size
    counting = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counting) == 1 and "'SUCCESS'" not in counting[0], counting  # SUCCESS rows are never counted
    snapshot = status_snapshot()
    assert snapshot["counts_estimated"] == ["SUCCESS"]
    assert snapshot["counts_note"].startswith("Estimated, not counted: SUCCESS.")
    assert "PostgreSQL's table statistics" in snapshot["counts_note"]


@pytest.mark.postgres_only
def test_action_status_counts__without_statistics_everything_is_counted(monkeypatch):
    """A table never analysed (no pg_stats row for status) has nothing to estimate from."""
    monkeypatch.setattr(status, "EXACT_COUNT_LIMIT", 1)
    actions_with_status(ActionStatus.SUCCESS, 5)
    counts, estimated = action_status_counts()
    assert (counts["SUCCESS"], estimated) == (5, [])


@pytest.mark.sqlite_only
def test_action_status_counts__sqlite_counts_everything(monkeypatch):
    monkeypatch.setattr(status, "EXACT_COUNT_LIMIT", 1)
    actions_with_status(ActionStatus.SUCCESS, 5)
    counts, estimated = action_status_counts()
    assert (counts["SUCCESS"], estimated) == (5, [])


@pytest.mark.parametrize(("rows", "shown"), [(0, 0), (7, 7), (999, 999), (889_137, 889_000), (1_234_567, 1_230_000)])
def test_estimate_round__three_significant_figures(rows, shown):
    assert estimate_round(rows) == shown
