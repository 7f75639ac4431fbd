"""Retention service: only old terminal records are pruned, in batches; storage sizes and their warning."""

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from orchestration.adapters.artifacts import TEMP_PREFIX
from orchestration.models import Action, ActionStatus, ExecutionLog, TickLedger
from orchestration.sentinels import sentinels_run
from orchestration.services.logs import log_write
from orchestration.services.retention import (
    PRUNABLE_STATUSES,
    TEMP_FILE_MAX_AGE_SECONDS,
    retention_prune,
    storage_sizes,
)
from tests.conftest import is_postgres
from tests.factories import action_with_status, aged_artifact, old_log, old_tick

pytestmark = pytest.mark.django_db


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


def leftover_temp_file(directory, *, age_seconds: float):
    """A temporary file as a crash between writing an artifact and naming it leaves, ``age_seconds`` old."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=".txt")
    os.write(fd, b"a complete artifact body\n")
    os.close(fd)
    then = time.time() - age_seconds
    os.utime(name, (then, then))
    return Path(name)


def test_retention_prune__leftover_temp_files_older_than_an_hour_go_fresh_ones_stay(artifacts_dir):
    old = leftover_temp_file(artifacts_dir / "post_social", age_seconds=TEMP_FILE_MAX_AGE_SECONDS + 60)
    fresh = leftover_temp_file(artifacts_dir / "post_social", age_seconds=60)
    artifact = aged_artifact("post_social/young.txt", old=False)
    os.utime(artifacts_dir / artifact, (old.stat().st_mtime,) * 2)  # two hours old: within its retention
    dry = retention_prune(dry_run=True)
    assert (dry.temp_files, dry.artifact_files) == (1, 0) and old.exists()
    report = retention_prune()
    assert (report.temp_files, report.artifact_files) == (1, 0)
    assert report.summary() == "0 actions, 0 logs, 0 ticks, 0 artifact files and 1 leftover temporary files deleted."
    assert not old.exists() and fresh.exists() and (artifacts_dir / artifact).exists()


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
