"""Shared fixtures: isolated artifacts, the test database's URL, and real daemon subprocesses."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

#: Short timings for daemons started by tests, so failover scenarios take seconds, not minutes.
FAST_DAEMON_ENV = {
    "AOL_TICK_INTERVAL_SECONDS": "0.2",
    "AOL_HEARTBEAT_SECONDS": "0.3",
    "AOL_LEASE_TTL_SECONDS": "1.5",
    "AOL_CONTROL_POLL_SECONDS": "0.1",
    "AOL_RETRY_BACKOFF_SECONDS": "0.2",
}


def pytest_collection_modifyitems(config, items):
    """Deselect tests marked for the other database, so that neither half reports them as skipped."""
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    other = "sqlite_only" if engine.endswith("postgresql") else "postgres_only"
    deselected = [item for item in items if item.get_closest_marker(other)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(other)]


@pytest.fixture(autouse=True)
def artifacts_dir(tmp_path, settings) -> Path:
    """Every test writes PROOF artifacts to its own directory."""
    path = tmp_path / "artifacts"
    settings.AOL_ARTIFACTS_DIR = path
    return path


def test_database_url() -> str:
    """The URL of the database this test run uses, for a subprocess to connect to (has secrets)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db.get("USER") or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{'@' if auth else ''}{host}{port}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def daemon_env(artifacts_dir) -> dict[str, str]:
    """Environment for a manage.py subprocess: the test database, fast timings, our artifacts dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOL_")}
    env.update(FAST_DAEMON_ENV)
    env.update(
        {
            "DATABASE_URL": test_database_url(),
            "AOL_ARTIFACTS_DIR": str(artifacts_dir),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "aicmo_site.settings",
        }
    )
    return env


class DaemonProcess:
    """A real ``manage.py run_aol_daemon`` process with its output collected to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_aol_daemon", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_for_output(self, text: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen within {timeout}s; output so far:\n{self.output()}")

    def wait(self, timeout: float = 15) -> int:
        return self.proc.wait(timeout=timeout)

    def owner(self, timeout: float = 15) -> str:
        """The lease owner name the daemon announced at start (``[AOL] Daemon <owner>: interval …``)."""
        pattern = re.compile(r"^\[AOL\] Daemon (\S+): interval ", re.MULTILINE)
        found = wait_until(lambda: pattern.search(self.output()), timeout=timeout, message="the daemon's owner line")
        return found.group(1)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def start_daemon(daemon_env, tmp_path):
    """Start real daemon processes: ``start_daemon("--proof", env={...})``; all are killed at teardown."""
    started: list[DaemonProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        process = DaemonProcess(list(args), {**daemon_env, **(env or {})}, tmp_path / f"daemon-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def wait_until(predicate, timeout: float = 15, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{message} not met within {timeout}s")


from tests.openai_server import openai_server  # noqa: E402,F401  (a fixture, shared by the suite)
from tests.platform_servers.bluesky import bluesky_server  # noqa: E402,F401  (a fixture)
from tests.platform_servers.linkedin import linkedin_server  # noqa: E402,F401  (a fixture)
from tests.platform_servers.local_network import local_network  # noqa: E402,F401  (fixture: retract, verify)
from tests.platform_servers.mastodon import mastodon_server  # noqa: E402,F401  (a fixture)
from tests.platform_servers.x import x_server  # noqa: E402,F401  (a fixture)
from tests.smtp_server import smtp_server, smtp_settings  # noqa: E402,F401  (fixtures)
from tests.web_server import database_switch, start_web_server  # noqa: E402,F401  (fixtures)
from tests.webhook_server import webhook_server, webhook_settings  # noqa: E402,F401  (fixtures)


@pytest.fixture
def analyse(db):
    """``analyse()`` runs ANALYZE on the big AOL tables (PostgreSQL), as autovacuum would.

    ANALYZE writes ``pg_class.reltuples`` in place, so the test's rollback does not undo it. At
    teardown the tables are emptied and analysed again: later tests see an estimate of 0 rows,
    not this test's rows.
    """

    def run() -> None:
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            for model in _analysed_models():
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")

    yield run
    for model in _analysed_models():
        model.objects.all().delete()
    run()


def _analysed_models():
    from orchestration.models import Action, ExecutionLog, TickLedger

    return (Action, ExecutionLog, TickLedger)
