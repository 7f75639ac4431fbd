"""The AOL settings (each declared once, read lazily), per-type settings (AOL_ACTION_TYPES), the approval
types, and their system checks E070-E072."""

import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import MISSING, fields

import pytest

from orchestration.checks import check_flow_control_settings
from orchestration.conf import (
    DECLARED_SETTINGS,
    ActionTypeSettings,
    ProjectPathSetting,
    Setting,
    action_type_settings,
    aol,
    approval_required_types,
)
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.models import Action, ActionStatus, ClaimedMode, ExecutionLog
from orchestration.services.claim import action_claim_due
from orchestration.services.enqueue import action_enqueue
from orchestration.services.results import action_mark_failure, action_outcome_unknown_policy
from tests.conftest import ROOT
from tests.factories import OWNER, hold_lease

# --- The declarations ------------------------------------------------------------------------------------

#: Prints, as JSON, each declared setting whose value in a fresh process is not its declared default.
PRINT_SETTINGS_NOT_AT_DEFAULT = """
import json
import django
from django.conf import settings
django.setup()
from orchestration.conf import DECLARED_SETTINGS, ProjectPathSetting, aol
from orchestration.daemon import DaemonConfig
wrong = {}
for setting in DECLARED_SETTINGS:
    expected = settings.BASE_DIR / setting.default if isinstance(setting, ProjectPathSetting) else setting.default
    seen = {"settings.py": getattr(settings, setting.name, "(not set)"), "aol": getattr(aol, setting.name[4:].lower())}
    if any(value != expected or type(value) is not type(expected) for value in seen.values()):
        wrong[setting.name] = {"declared": repr(expected), **{where: repr(value) for where, value in seen.items()}}
config = DaemonConfig.from_settings(owner="test:1")
if (config.interval_seconds, config.max_actions_per_tick) != (aol.tick_interval_seconds, aol.max_actions_per_tick):
    wrong["DaemonConfig"] = repr(config)
print(json.dumps(wrong))
"""


def documented_default(setting: Setting) -> str:
    """How the README's configuration table writes a setting's default (code spans unwrapped)."""
    default = setting.default
    if default is None:
        return setting.unset
    if isinstance(setting, ProjectPathSetting):
        return f"<project>/{default.as_posix()}"
    if isinstance(default, bool):
        return "1" if default else "0"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    if default == "":
        return "empty"
    if isinstance(default, tuple | list | dict) and not default:
        return "none"
    return str(default)


def documented_defaults(path) -> dict[str, str]:
    """``AOL_<NAME>`` → its default cell, from every table row of ``path`` that names one setting first."""
    rows = re.findall(r"^\| `(AOL_[A-Z0-9_]+)`(?: \([^|`]*\))? \| ([^|]*) \|", path.read_text(), re.MULTILINE)
    return {name: cell.strip().replace("`", "") for name, cell in rows}


def test_declared_settings__each_is_one_aol_attribute_with_a_meaning():
    names = [setting.name for setting in DECLARED_SETTINGS]
    assert len(names) == len(set(names)) and all(name.startswith("AOL_") for name in names)
    assert all(setting.meaning and (setting.default is not None or setting.unset) for setting in DECLARED_SETTINGS)
    assert type(aol).max_attempts in DECLARED_SETTINGS


def test_aol__without_aol_environment_variables_every_setting_is_its_declared_default():
    """settings.py takes each default from the declaration, aol reads it back, DaemonConfig adds none."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AOL_")}
    env["DJANGO_SETTINGS_MODULE"] = "aicmo_site.settings"
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS_NOT_AT_DEFAULT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}


def test_aol__reads_the_django_setting_when_used(settings):
    settings.AOL_MAX_ATTEMPTS = 7
    assert aol.max_attempts == 7
    del settings.AOL_MAX_ATTEMPTS
    assert aol.max_attempts == type(aol).max_attempts.default


def test_daemon_config__every_field_comes_from_the_settings_or_the_command_line(settings):
    settings.AOL_TICK_INTERVAL_SECONDS, settings.AOL_MAX_ACTIONS_PER_TICK, settings.AOL_WAKE_ON_ENQUEUE = 0.7, 9, False
    config = DaemonConfig.from_settings(owner="t:1", max_actions_per_tick=4, standby=None)
    assert (config.interval_seconds, config.max_actions_per_tick, config.wake_on_enqueue) == (0.7, 4, False)
    assert config.standby is False
    assert [field.name for field in fields(DaemonConfig) if field.default is not MISSING] == []


def test_readme__the_configuration_table_lists_every_setting_with_its_declared_default():
    documented = documented_defaults(ROOT / "README.md")
    assert sorted(documented) == sorted(setting.name for setting in DECLARED_SETTINGS)
    assert {name: documented[name] for name in documented} == {
        setting.name: documented_default(setting) for setting in DECLARED_SETTINGS
    }


def test_docs__every_table_row_of_one_setting_shows_its_declared_default():
    declared = {setting.name: documented_default(setting) for setting in DECLARED_SETTINGS}
    for path in sorted((ROOT / "docs").glob("*.md")):
        for name, cell in documented_defaults(path).items():
            assert name in declared, f"{path.name}: {name} is not a declared setting"
            assert cell == declared[name], f"{path.name}: {name} is documented as {cell!r}, declared {declared[name]!r}"


# --- Per-type settings -----------------------------------------------------------------------------------


def settings_of(**values) -> ActionTypeSettings:
    return ActionTypeSettings(action_type="SLEEP", max_attempts=3, **values)


@pytest.mark.parametrize(
    ("values", "delays"),
    [
        ({"backoff": "fixed", "backoff_seconds": 10}, [10, 10, 10, 10]),
        ({"backoff": "linear", "backoff_seconds": 10}, [10, 20, 30, 40]),
        ({"backoff": "exponential", "backoff_seconds": 10}, [10, 20, 40, 80]),
        ({"backoff": "exponential", "backoff_seconds": 10, "backoff_max_seconds": 30}, [10, 20, 30, 30]),
    ],
)
def test_backoff_for__fixed_linear_exponential_and_the_cap(values, delays):
    assert [settings_of(**values).backoff_for(attempts=n) for n in (1, 2, 3, 4)] == delays


def test_backoff_for__jitter_stays_within_its_fraction_and_varies():
    jittered = settings_of(backoff="fixed", backoff_seconds=100, jitter=0.2)
    delays = {jittered.backoff_for(attempts=1, rng=random.Random(seed)) for seed in range(50)}
    assert all(80 <= delay <= 120 for delay in delays) and len(delays) > 40


def test_action_type_settings__defaults_are_the_global_settings(settings):
    settings.AOL_MAX_ATTEMPTS, settings.AOL_RETRY_BACKOFF_SECONDS = 4, 2.5
    assert action_type_settings("SLEEP") == ActionTypeSettings(
        action_type="SLEEP", max_attempts=4, backoff="linear", backoff_seconds=2.5, orphan_policy="auto"
    )


@pytest.mark.django_db
def test_mark_failure__honours_the_types_attempt_limit_and_backoff(settings):
    settings.AOL_ACTION_TYPES = {"SLEEP": {"max_attempts": 2, "backoff": "fixed", "backoff_seconds": 60}}
    action = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    token = hold_lease()
    [claimed] = action_claim_due(owner=OWNER, token=token, limit=1, proof=True)
    assert action_mark_failure(action=claimed, token=token, actor=OWNER, error="e", permanent=False) == "RETRY"
    row = Action.objects.get(pk=action.pk)
    wait = (row.not_before - row.updated_at).total_seconds()
    assert 59 <= wait <= 61
    assert "attempt 1 of 2 failed, retrying in 60s" in ExecutionLog.objects.get(action_id=action.pk).message
    Action.objects.filter(pk=action.pk).update(status=ActionStatus.RUNNING, attempts=2)
    claimed.attempts = 2
    assert action_mark_failure(action=claimed, token=token, actor=OWNER, error="e", permanent=False) == "DLQ"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("policy", "mode", "expected"),
    [
        ("auto", ClaimedMode.REAL, "RETRY"),  # SLEEP is idempotent
        ("needs_review", ClaimedMode.REAL, "NEEDS_REVIEW"),
        ("needs_review", ClaimedMode.PROOF, "RETRY"),  # PROOF attempts are always retried
        ("retry", ClaimedMode.REAL, "RETRY"),
    ],
)
def test_outcome_unknown_policy__the_types_orphan_policy_decides_real_attempts(settings, policy, mode, expected):
    settings.AOL_ACTION_TYPES = {"SLEEP": {"orphan_policy": policy}}
    assert action_outcome_unknown_policy(action_type="SLEEP", claimed_mode=mode) == expected


@pytest.mark.django_db(transaction=True)
def test_daemon__the_types_timeout_bounds_the_attempt_before_the_tick_budget(settings):
    settings.AOL_ACTION_TYPES = {"SLEEP": {"timeout_seconds": 0.3}}
    action = action_enqueue(action_type="SLEEP", payload={"seconds": 30})[0]
    daemon = Daemon(DaemonConfig.from_settings(owner="test:1", max_tick_seconds=20), out=lambda line: None)
    started = time.monotonic()
    daemon.tick(0)
    assert time.monotonic() - started < 10
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRY
    assert "the SLEEP timeout of 0.3s, AOL_ACTION_TYPES" in action.last_error


# --- The approval types ---------------------------------------------------------------------------------


def test_approval_required_types__default_names_post_social_and_send_email(settings):
    settings.AOL_APPROVAL_REQUIRED_TYPES = None
    assert approval_required_types() == {"POST_SOCIAL", "SEND_EMAIL"}
    assert check_flow_control_settings() == []  # SEND_EMAIL unknown here: ignored in the default only


def test_approval_required_types__set_empty_means_none(settings):
    settings.AOL_APPROVAL_REQUIRED_TYPES = []
    assert approval_required_types() == frozenset()


# --- The checks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "check_id", "message"),
    [
        ("AOL_ACTION_TYPES", {"NOPE": {}}, "orchestration.E070", "unknown action type 'NOPE'"),
        ("AOL_ACTION_TYPES", {"SLEEP": {"max_attempts": 0}}, "orchestration.E070", "whole number greater than zero"),
        ("AOL_ACTION_TYPES", {"SLEEP": {"backoff": "random"}}, "orchestration.E070", "fixed, linear, exponential"),
        ("AOL_ACTION_TYPES", {"SLEEP": {"jitter": 2}}, "orchestration.E070", "fraction from 0 to 1"),
        ("AOL_ACTION_TYPES", {"SLEEP": {"timeout_seconds": -1}}, "orchestration.E070", "seconds > 0"),
        ("AOL_ACTION_TYPES", {"SLEEP": {"orphan_policy": "pray"}}, "orchestration.E070", "auto, retry, needs_review"),
        ("AOL_ACTION_TYPES", {"SLEEP": {"retries": 3}}, "orchestration.E070", "unknown setting 'retries'"),
        ("AOL_ACTION_TYPES", "{not json", "orchestration.E070", "is not a JSON object"),
        ("AOL_APPROVAL_REQUIRED_TYPES", ["POST_SOCIAL", "SEND_EMAILS"], "orchestration.E071", "'SEND_EMAILS'"),
        ("AOL_APPROVAL_REQUIRED_TYPES", ["DRAFT_SOCIAL"], "orchestration.E071", "cannot be approved"),
        (
            "AOL_RATE_LIMITS",
            [{"action_type": "NOPE", "max_count": 1, "period_seconds": 1}],
            "orchestration.E072",
            "NOPE",
        ),
        (
            "AOL_RATE_LIMITS",
            [{"action_type": "POST_SOCIAL", "max_count": -5, "period_seconds": 60}],
            "orchestration.E072",
            "max_count must be a whole number greater than zero",
        ),
        ("AOL_RATE_LIMITS", [{"action_type": "SLEEP", "max_count": 1}], "orchestration.E072", "period_seconds"),
    ],
)
def test_check_flow_control_settings__each_mistake_has_its_id(settings, setting, value, check_id, message):
    setattr(settings, setting, value)
    errors = check_flow_control_settings()
    assert errors and {error.id for error in errors} == {check_id}
    assert any(message in error.msg for error in errors), [error.msg for error in errors]


def test_run_aol_daemon__refuses_to_start_on_an_unknown_type_in_aol_action_types(daemon_env):
    """The daemon runs the system checks first: a typo in AOL_ACTION_TYPES stops it with E070."""
    result = subprocess.run(
        [sys.executable, "manage.py", "run_aol_daemon", "--ticks", "1"],
        cwd=ROOT,
        env={**daemon_env, "AOL_ACTION_TYPES": '{"POST_SOCAIL": {"max_attempts": 5}}'},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "orchestration.E070" in result.stderr and "POST_SOCAIL" in result.stderr
