"""Retention: aol_prune deletes only old terminal records in batches; storage sizes and their warning."""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from orchestration.adapters.artifacts import artifact_write
from orchestration.models import Action, ActionStatus, ExecutionLog, TickLedger
from orchestration.sentinels import sentinels_run
from orchestration.services.logs import log_write
from orchestration.services.queue import action_enqueue
from orchestration.services.retention import PRUNABLE_STATUSES, retention_prune, storage_sizes
from tests.conftest import ROOT, is_postgres

pytestmark = pytest.mark.django_db

OLD = timezone.now() - timedelta(days=90)


def action_with_status(status: str, *, old: bool = True, n: int = 0) -> Action:
    action, _ = action_enqueue(
        action_type="POST_SOCIAL", payload={"platform": "twitter", "message": f"{status} {n}"}, idempotency_key=None
    )
    fields = {"status": status, "lease_token": 1 if status == ActionStatus.RUNNING else None}
    if old:
        fields.update(created_at=OLD, updated_at=OLD)
    Action.objects.filter(pk=action.pk).update(**fields)
    return action


def old_log(**fields) -> ExecutionLog:
    entry = log_write(message="something happened", **fields)
    ExecutionLog.objects.filter(pk=entry.pk).update(ts=OLD)
    return entry


def old_tick() -> TickLedger:
    return TickLedger.objects.create(started_at=OLD, finished_at=OLD, status="SUCCESS")


def aged_artifact(ref: str, *, old: bool = True) -> str:
    artifact_write(ref=ref, content=ref.encode())
    if old:
        from orchestration.adapters.artifacts import artifact_path

        os.utime(artifact_path(ref), (OLD.timestamp(), OLD.timestamp()))
    return ref


def test_retention_prune__never_touches_an_action_that_is_not_success_or_failed():
    statuses = list(ActionStatus.values)
    for n, status in enumerate(statuses):
        action_with_status(status, n=n)
    report = retention_prune()
    survivors = set(Action.objects.values_list("status", flat=True))
    assert survivors == set(statuses) - set(PRUNABLE_STATUSES)
    assert report.actions == len(PRUNABLE_STATUSES) == 2


def test_retention_prune__keeps_records_younger_than_their_retention():
    action_with_status(ActionStatus.SUCCESS, old=False)
    log_write(message="fresh")
    TickLedger.objects.create(started_at=timezone.now(), finished_at=timezone.now(), status="SUCCESS")
    aged_artifact("post_social/fresh.txt", old=False)
    report = retention_prune()
    assert (report.actions, report.logs, report.ticks, report.artifact_files) == (0, 0, 0, 0)
    assert Action.objects.count() == ExecutionLog.objects.count() == TickLedger.objects.count() == 1


def test_retention_prune__logs_and_artifacts_of_open_actions_are_kept(artifacts_dir):
    dead = action_with_status(ActionStatus.DLQ)
    done = action_with_status(ActionStatus.SUCCESS)
    kept_ref = aged_artifact("post_social/dead.txt")
    gone_ref = aged_artifact("post_social/done.txt")
    old_log(action_id=dead.pk, artifact_ref=kept_ref, artifact_sha256="x" * 64)
    old_log(action_id=done.pk, artifact_ref=gone_ref, artifact_sha256="y" * 64)
    old_log()  # an operator's change (no action)
    report = retention_prune()
    assert (report.actions, report.logs, report.artifact_files) == (1, 2, 1)
    assert list(ExecutionLog.objects.values_list("action_id", flat=True)) == [dead.pk]
    assert (artifacts_dir / kept_ref).exists() and not (artifacts_dir / gone_ref).exists()


def test_retention_prune__deletes_in_batches_of_the_given_size():
    for n in range(7):
        action_with_status(ActionStatus.SUCCESS, n=n)
        old_tick()
    report = retention_prune(batch_size=2)
    assert (report.actions, report.ticks) == (7, 7)
    assert report.batches >= 8  # 4 batches per table at 2 rows each
    assert report.longest_batch_seconds > 0
    assert not Action.objects.exists() and not TickLedger.objects.exists()


def test_retention_prune__dry_run_counts_and_deletes_nothing(artifacts_dir):
    action_with_status(ActionStatus.FAILED)
    old_log()
    old_tick()
    aged_artifact("send_email/old.eml")
    report = retention_prune(dry_run=True)
    assert report.summary() == "1 actions, 1 logs, 1 ticks and 1 artifact files would be deleted."
    assert Action.objects.count() == ExecutionLog.objects.count() == TickLedger.objects.count() == 1
    assert (artifacts_dir / "send_email/old.eml").exists()


def test_retention_prune__a_spent_time_slice_stops_and_the_next_run_goes_on():
    for n in range(3):
        action_with_status(ActionStatus.SUCCESS, n=n)
    stopped = retention_prune(max_seconds=1e-9)
    assert stopped.complete is False and stopped.actions == 0
    assert Action.objects.count() == 3
    finished = retention_prune(max_seconds=60)
    assert finished.complete is True and finished.actions == 3


def test_retention_prune__retention_ages_come_from_settings(settings):
    settings.AOL_RETENTION_ACTIONS_DAYS = 120  # OLD is 90 days old: kept
    action_with_status(ActionStatus.SUCCESS)
    assert retention_prune().actions == 0
    assert retention_prune(actions_days=60).actions == 1


# --- the command -------------------------------------------------------------------------------------------


def test_aol_prune__reports_counts(artifacts_dir):
    action_with_status(ActionStatus.SUCCESS)
    action_with_status(ActionStatus.DLQ)
    old_log()
    old_log()
    old_tick()
    aged_artifact("post_social/a.txt")
    out = StringIO()
    call_command("aol_prune", "--batch-size", "10", "--max-seconds", "30", stdout=out, no_color=True)
    text = out.getvalue()
    assert "1 actions, 2 logs, 1 ticks and 1 artifact files deleted." in text
    assert "the longest held its transaction" in text
    assert Action.objects.get().status == ActionStatus.DLQ


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--actions-days", "0"], "--actions-days: must be a number greater than zero, got 0"),
        (["--logs-days", "-3"], "must be a number greater than zero, got -3"),
        (["--batch-size", "many"], "'many' is not a whole number"),
        (["--max-seconds", "0"], "must be a number greater than zero"),
    ],
)
def test_aol_prune__bad_arguments_are_refused_and_nothing_is_deleted(args, error):
    action_with_status(ActionStatus.SUCCESS)
    with pytest.raises(CommandError, match=error):
        call_command("aol_prune", *args)
    assert Action.objects.count() == 1


def test_aol_prune__a_malformed_setting_exits_2_naming_it(settings):
    settings.AOL_RETENTION_TICKS_DAYS = "soon"
    action_with_status(ActionStatus.SUCCESS)
    with pytest.raises(CommandError, match="retention for ticks must be a number of days greater than zero") as e:
        call_command("aol_prune")
    assert e.value.returncode == 2
    assert Action.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_aol_prune__as_a_process_with_dry_run(daemon_env):
    action_with_status(ActionStatus.SUCCESS)
    done = subprocess.run(
        [sys.executable, "manage.py", "aol_prune", "--dry-run"],
        cwd=ROOT,
        env=daemon_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "1 actions, 0 logs, 0 ticks and 0 artifact files would be deleted." in done.stdout
    assert Action.objects.count() == 1


# --- sizes: status view and sentinel -------------------------------------------------------------------------


def test_storage_sizes__counts_rows_and_artifacts():
    for n in range(3):
        action_with_status(ActionStatus.SUCCESS, n=n)
    aged_artifact("post_social/one.txt", old=False)
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE aol_actions")
    sizes = storage_sizes(max_age_seconds=0)
    by_table = {t["table"]: t for t in sizes["tables"]}
    assert by_table["aol_actions"]["rows"] == 3
    assert by_table["aol_actions"]["estimated"] is is_postgres()
    assert sizes["artifacts"]["files"] == 1 and sizes["artifacts"]["bytes"] == len(b"post_social/one.txt")
    assert sizes["warn"] is False
    assert sizes["database_bytes"] > 0


def test_storage_sizes__warn_above_the_thresholds_in_the_sentinel(settings):
    settings.AOL_WARN_ROWS = 2
    for n in range(3):
        action_with_status(ActionStatus.SUCCESS, n=n)
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE aol_actions")
    result = next(r for r in sentinels_run() if r.id == "orchestration.S013")
    assert result.status == "warn"
    assert "aol_actions above 2 rows (AOL_WARN_ROWS)" in result.detail
    assert "python manage.py aol_prune" in result.advice
    settings.AOL_WARN_ROWS = 1_000_000
    settings.AOL_WARN_ARTIFACTS_MB = 0.00001
    aged_artifact("post_social/big.txt", old=False)
    result = next(r for r in sentinels_run() if r.id == "orchestration.S013")
    assert result.status == "warn" and "AOL_WARN_ARTIFACTS_MB" in result.detail


def test_storage_sizes__shown_on_the_status_view(django_user_model):
    from django.test import Client

    user = django_user_model.objects.create_superuser("root", "", "pw-long-enough-123")
    client = Client()
    client.force_login(user)
    action_with_status(ActionStatus.SUCCESS)
    page = client.get("/console/").content.decode()
    assert 'id="card-storage"' in page and "aol_execution_logs" in page
    data = json.loads(client.get("/console/status.json").content)
    assert {t["table"] for t in data["storage"]["tables"]} == {"aol_actions", "aol_execution_logs", "aol_tick_ledger"}


def test_storage_sizes__cached_between_calls():
    first = storage_sizes(max_age_seconds=60)
    assert first["artifacts"]["files"] == 0
    aged_artifact("post_social/new.txt", old=False)
    assert storage_sizes(max_age_seconds=60) is first
    time.sleep(0.01)
    assert storage_sizes(max_age_seconds=0.001)["artifacts"]["files"] == 1
