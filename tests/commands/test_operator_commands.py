"""aol_enqueue, aol_status, aol_control, and run_aol_daemon's refusals, as operators run them."""

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from orchestration.models import Action, ActionStatus, ExecutionLog
from orchestration.services.control import control_flags_get
from tests.conftest import ROOT
from tests.console_fixtures import actions_with_status
from tests.factories import hold_lease, post_social

PAYLOAD = '{"platform": "twitter", "message": "Test message from CLI"}'


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def manage(*args, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


# --- aol_enqueue ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_aol_enqueue__queues_the_runbook_payload_and_is_idempotent_per_key():
    first = run("aol_enqueue", "POST_SOCIAL", "--payload", PAYLOAD, "--key", "cli_test_001")
    assert "enqueued" in first and "cli_test_001" in first
    again = run("aol_enqueue", "POST_SOCIAL", "--payload", PAYLOAD, "--key", "cli_test_001")
    assert "already exists for this key; nothing written" in again
    assert Action.objects.count() == 1


@pytest.mark.django_db
def test_aol_enqueue__not_before_without_offset_is_utc():
    run("aol_enqueue", "POST_SOCIAL", "--payload", PAYLOAD, "--not-before", "2030-01-02T03:04:05")
    assert Action.objects.get().not_before.isoformat() == "2030-01-02T03:04:05+00:00"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["POST_SOCIAL", "--payload", "{bad"], "Payload is not valid JSON"),
        (["POST_SOCIAL", "--payload", "[1, 2]"], "must be a JSON object, not list"),
        (["TWEET", "--payload", PAYLOAD], "Unknown action type 'TWEET'; known types: .*POST_SOCIAL"),
        (["POST_SOCIAL", "--payload", '{"platform": "twitter"}'], "'message' is required"),
        (["POST_SOCIAL", "--payload", PAYLOAD, "--not-before", "tomorrow"], "not an ISO 8601 time"),
    ],
)
def test_aol_enqueue__bad_input_fails_with_a_clear_message_and_writes_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("aol_enqueue", *args)
    assert Action.objects.count() == 0


@pytest.mark.django_db
def test_aol_enqueue__reused_key_with_another_payload_is_refused():
    post_social("dup", message="one")
    with pytest.raises(CommandError, match="'dup' is already used by action"):
        call_command("aol_enqueue", "POST_SOCIAL", "--payload", PAYLOAD, "--key", "dup")
    assert Action.objects.get().payload["message"] == "one"


# --- aol_status ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_aol_status__json_shows_flags_lease_holder_and_counts():
    post_social("a")
    post_social("b")
    hold_lease(owner="host:42")
    snapshot = json.loads(run("aol_status", "--json"))
    assert snapshot["flags"]["mode"] == "PROOF"
    assert snapshot["lease"]["holder"] == "host:42" and snapshot["lease"]["state"] == "green"
    assert snapshot["counts"]["PENDING"] == 2 and snapshot["counts"]["DLQ"] == 0


@pytest.mark.django_db
def test_aol_status__text_says_when_no_daemon_is_running():
    text = run("aol_status")
    assert "Lease:     free: no daemon is running" in text
    assert "No daemon is running: start one: `make run`" in text
    assert "Mode:      PROOF" in text


@pytest.mark.django_db
def test_aol_status__text_says_real_is_requested_but_the_daemon_is_forced_to_proof():
    from orchestration.services.control import control_set_proof_mode
    from orchestration.services.lease import lease_acquire_or_renew

    control_set_proof_mode(enabled=False, actor="test", reason="go live")
    lease_acquire_or_renew(owner="host:42", ttl_seconds=30, proof_forced_by="its command line (--proof)")
    text = run("aol_status")
    assert "Mode:      PROOF" in text
    assert "REAL requested; the running daemon is forced to PROOF by its command line (--proof)." in text


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_aol_status__text_marks_an_estimated_count(analyse, monkeypatch):
    monkeypatch.setattr("orchestration.services.status.EXACT_COUNT_LIMIT", 10)
    actions_with_status(ActionStatus.SUCCESS, 30)
    post_social("a")
    analyse()
    text = run("aol_status")
    assert "SUCCESS: ~" in text and "PENDING: 1 " in text
    assert "~ Estimated, not counted: SUCCESS." in text


# --- aol_control ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_aol_control__pause_and_proof_off_are_applied_and_audited():
    assert "pause: done" in run("aol_control", "pause", "--reason", "maintenance", "--actor", "ops-anna")
    assert "proof off: done" in run("aol_control", "proof", "off", "--reason", "go live", "--actor", "ops-anna")
    flags = control_flags_get()
    assert flags.paused and not flags.proof_mode
    messages = list(ExecutionLog.objects.order_by("id").values_list("message", flat=True))
    assert messages == [
        "pause by ops-anna: paused False → True; reason: maintenance",
        "switch to REAL by ops-anna: proof_mode True → False; reason: go live",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["proof", "--reason", "x"], "Say 'proof on' or 'proof off'"),
        (["pause", "on", "--reason", "x"], "'pause' takes no value"),
        (["kill", "--reason", "  "], "A reason is required to kill"),
    ],
)
def test_aol_control__bad_input_changes_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("aol_control", *args)
    flags = control_flags_get()
    assert (flags.paused, flags.killed, flags.proof_mode) == (False, False, True)
    assert not ExecutionLog.objects.exists()


# --- run_aol_daemon refusing to start ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ticks", "0"], "argument --ticks: must be greater than zero, got 0"),
        (["--interval", "-1"], "argument --interval: must be a number greater than zero"),
        (["--max-actions", "many"], "argument --max-actions: 'many' is not a whole number"),
    ],
)
@pytest.mark.sqlite_only  # refused before any database is touched
def test_run_aol_daemon__invalid_arguments_exit_2(daemon_env, args, message):
    result = manage("run_aol_daemon", *args, env=daemon_env)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.sqlite_only  # its own unreachable URL, whichever database the half uses
def test_run_aol_daemon__unreachable_database_exits_1_with_a_masked_url(daemon_env):
    env = {**daemon_env, "DATABASE_URL": "postgres://aol:CanarySecret42@127.0.0.1:1/aicmo"}
    result = manage("run_aol_daemon", "--ticks", "1", env=env)
    assert result.returncode == 1
    assert "Cannot reach the database at postgresql://aol:***@127.0.0.1:1/aicmo" in result.stderr
    assert "Traceback" not in result.stderr
    assert "CanarySecret42" not in result.stdout + result.stderr


def test_run_aol_daemon__unmigrated_database_exits_1_and_says_to_migrate(daemon_env, tmp_path):
    env = {**daemon_env, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = manage("run_aol_daemon", "--ticks", "1", env=env)
    assert result.returncode == 1
    assert "migration(s) are not applied" in result.stderr and "python manage.py migrate" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AOL_MAX_ATTEMPTS", "0", "AOL_MAX_ATTEMPTS=0 must be a number greater than zero"),
        ("AOL_MAX_ACTIONS_PER_TICK", "-3", "AOL_MAX_ACTIONS_PER_TICK=-3 must be a number greater than zero"),
        ("AOL_TICK_INTERVAL_SECONDS", "soon", "AOL_TICK_INTERVAL_SECONDS='soon' must be a number"),
        ("AOL_LEASE_TTL_SECONDS", "0.5", "AOL_LEASE_TTL_SECONDS=0.5 is too close to AOL_HEARTBEAT_SECONDS=0.3"),
    ],
)
@pytest.mark.sqlite_only  # refused before any database is touched
def test_settings__invalid_values_stop_start_up_with_a_message_naming_them(daemon_env, variable, value, message):
    result = manage("run_aol_daemon", "--ticks", "1", env={**daemon_env, variable: value})
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.sqlite_only  # its own URL, whichever database the half uses
def test_settings__unusable_database_url_is_one_clear_line(daemon_env):
    result = manage("check", env={**daemon_env, "DATABASE_URL": "garbage"})
    assert result.returncode == 1
    assert "(orchestration.E011) DATABASE_URL=garbage cannot be used" in result.stderr
    assert "Traceback" not in result.stderr
