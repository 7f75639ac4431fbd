"""deploy/: the systemd units, the gunicorn settings and the environment file example.

The units are checked by ``systemd-analyze verify`` (it needs no running systemd), with /srv/aicmo
pointed at this checkout so that their programs exist; every command line they run is parsed by the
parser of the command it names (a manage.py command's own, gunicorn's ``--check-config``); the
daemons' restart policy is held to run_aol_daemon's exit codes; and gunicorn with the example's
HTTPS settings is asked what a proxy in front would ask.
"""

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

from orchestration.daemon.config import EXIT_ERROR, EXIT_LEASE_HELD, EXIT_LEASE_LOST, EXIT_OK, EXIT_USAGE, EXIT_WEDGED
from tests.conftest import ROOT, test_database_url

DEPLOY = ROOT / "deploy"
UNITS = sorted([*DEPLOY.glob("*.service"), *DEPLOY.glob("*.timer")])
SERVICES = [unit for unit in UNITS if unit.suffix == ".service"]
#: Where the units expect the release (README "Deploying").
INSTALL_DIR = "/srv/aicmo"
ENV_EXAMPLE = DEPLOY / "aicmo.env.example"
#: run_aol_daemon's exit codes for a second SIGHUP, SIGINT or SIGTERM (128 + the signal number).
SECOND_SIGNAL_EXITS = {129, 130, 143}


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values]}}`` of a unit file (comments and blank lines skipped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{path.name}: {line!r} before any section"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def exec_start(path: Path) -> list[str]:
    [line] = parse_unit(path)["Service"]["ExecStart"]
    return shlex.split(line)


def localised(text: str) -> str:
    """A unit's text with /srv/aicmo pointing at this checkout and its virtualenv (the running one)."""
    text = text.replace(f"{INSTALL_DIR}/.venv/bin", str(Path(sys.executable).parent))
    return text.replace(INSTALL_DIR, str(ROOT))


def test_deploy__has_the_units_the_readme_names():
    names = {unit.name for unit in UNITS}
    assert names == {
        "aicmo-web.service",
        "aicmo-aol-daemon.service",
        "aicmo-aol-daemon-standby.service",
        "aicmo-aol-prune.service",
        "aicmo-aol-prune.timer",
    }
    readme = (ROOT / "README.md").read_text()
    for name in names | {"aicmo.env.example", "gunicorn.conf.py"}:
        assert f"deploy/{name}" in readme or name in readme, f"README does not mention {name}"


def test_units__systemd_analyze_verify_finds_nothing(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        message = "systemd-analyze not found: install Debian's systemd (apt-get install -y systemd)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    for unit in UNITS:
        (tmp_path / unit.name).write_text(localised(unit.read_text()))
    result = subprocess.run(
        [tool, "verify", *sorted(p.name for p in tmp_path.iterdir())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on some problems (an unknown key, a value it cannot parse and ignores): any
    # output at all is a finding.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("unit", [u for u in SERVICES if exec_start(u)[1:2] == ["manage.py"]], ids=lambda u: u.name)
def test_units__manage_py_command_lines_parse_with_the_commands_own_parser(unit):
    program, _, name, *args = exec_start(unit)
    assert program == f"{INSTALL_DIR}/.venv/bin/python"
    assert name in get_commands(), f"{unit.name}: no manage.py command {name!r}"
    command = load_command_class(get_commands()[name], name)
    # Not from the command line: a bad option raises CommandError instead of exiting.
    parser = command.create_parser("manage.py", name)
    parser.parse_args(args)
    assert parse_unit(unit)["Service"]["WorkingDirectory"] == [INSTALL_DIR]


def test_units__a_bad_option_would_be_caught():
    """The check above does refuse what the command would refuse."""
    from django.core.management import CommandError

    command = load_command_class("orchestration", "run_aol_daemon")
    with pytest.raises(CommandError):
        command.create_parser("manage.py", "run_aol_daemon").parse_args(["--standbye"])


def test_web_unit__gunicorn_accepts_its_command_line_and_loads_the_application(tmp_path):
    argv = exec_start(DEPLOY / "aicmo-web.service")
    assert argv[0] == f"{INSTALL_DIR}/.venv/bin/gunicorn"
    local = shlex.split(localised(shlex.join(argv)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AOL_", "AICMO_"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'unused.sqlite3'}"
    result = subprocess.run([*local, "--check-config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_daemon_units__restart_policy_follows_run_aol_daemon_exit_codes():
    primary = parse_unit(DEPLOY / "aicmo-aol-daemon.service")["Service"]
    standby = parse_unit(DEPLOY / "aicmo-aol-daemon-standby.service")["Service"]
    for service in (primary, standby):
        # on-failure: exit 0 (ticks done, stopped, or the KILL flag) stays down; a kill means "stay stopped".
        assert service["Restart"] == ["on-failure"]
        assert {int(code) for code in service["SuccessExitStatus"][0].split()} == SECOND_SIGNAL_EXITS
        prevented = {int(code) for code in service["RestartPreventExitStatus"][0].split()}
        assert EXIT_USAGE in prevented
        assert not {EXIT_ERROR, EXIT_WEDGED} & prevented  # database down at start, piled-up threads: restart
        assert EXIT_OK not in prevented
        assert service["KillSignal"] == ["SIGTERM"]
    # The primary does not fight a lease holder: exits 3 and 4 mean another daemon runs the queue.
    assert {int(code) for code in primary["RestartPreventExitStatus"][0].split()} == {
        EXIT_USAGE,
        EXIT_LEASE_HELD,
        EXIT_LEASE_LOST,
    }
    assert "--standby" not in exec_start(DEPLOY / "aicmo-aol-daemon.service")
    assert "--standby" in exec_start(DEPLOY / "aicmo-aol-daemon-standby.service")


def test_daemon_units__stop_timeout_outlasts_the_tick_deadline(settings):
    """systemctl stop must not SIGKILL a daemon that is letting an action finish within its deadline."""
    for name in ("aicmo-aol-daemon.service", "aicmo-aol-daemon-standby.service"):
        [timeout] = parse_unit(DEPLOY / name)["Service"]["TimeoutStopSec"]
        assert float(timeout) > settings.AOL_MAX_TICK_SECONDS + settings.AOL_HEARTBEAT_SECONDS


def test_prune_timer__starts_the_prune_service_daily():
    timer = parse_unit(DEPLOY / "aicmo-aol-prune.timer")
    assert (DEPLOY / timer["Timer"].get("Unit", ["aicmo-aol-prune.service"])[0]).exists()
    assert timer["Timer"]["Persistent"] == ["true"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]
    service = parse_unit(DEPLOY / "aicmo-aol-prune.service")["Service"]
    assert service["Type"] == ["oneshot"]
    assert exec_start(DEPLOY / "aicmo-aol-prune.service")[2] == "aol_prune"


def test_units__every_service_reads_the_environment_file_and_runs_unprivileged():
    for unit in SERVICES:
        service = parse_unit(unit)["Service"]
        assert service["EnvironmentFile"] == ["/etc/aicmo/aicmo.env"], unit.name
        assert service["User"] == ["aicmo"], unit.name


def env_example(*, commented: bool = True) -> dict[str, str]:
    """The example's variables; ``commented``: also those in ``#NAME=value`` lines (optional ones)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if commented:
            line = line.removeprefix("#")
        if re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", line):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_env_example__names_only_documented_variables_and_no_secrets():
    readme = (ROOT / "README.md").read_text()
    values = env_example()
    assert "DATABASE_URL" in values and "SECRET_KEY" in values
    for name, value in values.items():
        assert f"`{name}`" in readme, f"{name} is not in the README's configuration table"
        if any(word in name for word in ("SECRET", "PASSWORD", "KEY", "TOKEN")):
            assert value in ("", "CHANGE-ME"), f"{name} has a value in the example"
    assert ":CHANGE-ME@" in values["DATABASE_URL"]


def test_env_example__passes_djangos_deployment_checks(tmp_path):
    """The example's settings, with a real secret key filled in, satisfy ``manage.py check --deploy``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AOL_", "AICMO_", "OPENAI_"))}
    env.update(env_example(commented=False))
    env.update(
        {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
            "AOL_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
            "DJANGO_SETTINGS_MODULE": "aicmo_site.settings",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_gunicorn_behind_https_proxy__redirects_plain_http_but_not_what_the_proxy_marks_https(
    start_web_server,
):
    """With the example's HTTPS settings, a request the proxy marks X-Forwarded-Proto: https is served
    (no redirect loop), a plain one is sent to https://, and health probes answer over plain HTTP."""
    example = env_example()
    server = start_web_server(
        test_database_url(),
        AICMO_HTTPS=example["AICMO_HTTPS"],
        AICMO_TRUSTED_PROXY_HOPS=example["AICMO_TRUSTED_PROXY_HOPS"],
        ALLOWED_HOSTS="aicmo.example.com,127.0.0.1",
    )
    host = {"Host": "aicmo.example.com"}
    status, _, headers = server.request("/admin/login/", headers=host)
    assert status == 301
    assert headers["Location"] == "https://aicmo.example.com/admin/login/"
    status, body, headers = server.request("/admin/login/", headers={**host, "X-Forwarded-Proto": "https"})
    assert status == 200, body
    assert "Strict-Transport-Security" in headers
    status, _, _ = server.request("/healthz", headers=host)
    assert status == 200
