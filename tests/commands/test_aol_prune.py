"""aol_prune as a command: in process with call_command and as a real process; counts and bad input."""

import os
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from orchestration.models import Action, ActionStatus
from tests.conftest import ROOT
from tests.factories import action_with_status, aged_artifact, old_log, old_tick

pytestmark = pytest.mark.django_db


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


def test_aol_prune__reports_leftover_temp_files_and_keeps_fresh_ones(artifacts_dir):
    folder = artifacts_dir / "sleep"
    folder.mkdir(parents=True)
    old, fresh = folder / ".tmp-crashed.txt", folder / ".tmp-in-flight.txt"
    for path in (old, fresh):
        path.write_bytes(b"a complete artifact body\n")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(old, (two_hours_ago, two_hours_ago))
    out = StringIO()
    call_command("aol_prune", stdout=out, no_color=True)
    assert "0 actions, 0 logs, 0 ticks, 0 artifact files and 1 leftover temporary files deleted." in out.getvalue()
    assert not old.exists() and fresh.exists()


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
