"""check_sentinels as a real process against broken configurations: right verdicts, exit codes, no traceback."""

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

# Each test names its own database URL (unreachable, unmigrated, malformed, a fresh file): the same on
# either half, so they run once.
pytestmark = pytest.mark.sqlite_only


def sentinels(database_url: str, *args: str, cwd=ROOT, timeout: float = 60) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AOL_", "OPENAI_", "AICMO_"))}
    env.update({"DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "aicmo_site.settings"})
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check_sentinels", "--json", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    data = json.loads(out.stdout)
    return out.returncode, {c["name"]: c for c in data["checks"]}, out.stdout + out.stderr


def test_check_sentinels__no_database_server_fails_fast_with_masked_url_and_advice():
    started = time.monotonic()
    code, checks, output = sentinels("postgres://postgres:pw-do-not-show@127.0.0.1:1/x")
    assert time.monotonic() - started < 30  # a refused connection, not a hang (margin for a busy machine)
    assert code == 1
    connectivity = checks["Database connectivity"]
    assert connectivity["status"] == "fail"
    assert "postgresql://postgres:***@127.0.0.1:1/x" in connectivity["detail"]
    assert "Connection refused" in connectivity["detail"]
    assert "server is running" in connectivity["advice"]
    assert checks["AOL tables"]["status"] == checks["Migrations"]["status"] == "skip"
    assert checks["DATABASE_URL"]["status"] == "pass"
    assert "pw-do-not-show" not in output
    assert "Database connectivity" in output.splitlines()[-1]  # the CommandError line on stderr


def test_check_sentinels__unmigrated_database_names_missing_tables_and_says_migrate(tmp_path):
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()
    code, checks, _ = sentinels(f"sqlite:///{empty}")
    assert code == 1
    assert checks["Database connectivity"]["status"] == "pass"
    tables = checks["AOL tables"]
    assert tables["status"] == "fail"
    for name in ("aol_actions", "aol_control_flags", "aol_execution_logs", "aol_lease", "aol_tick_ledger"):
        assert name in tables["detail"]
    assert tables["advice"] == "Run: python manage.py migrate"
    assert checks["Migrations"]["status"] == "fail"
    assert checks["Migrations"]["advice"] == "Run: python manage.py migrate"


def test_check_sentinels__missing_sqlite_file_is_not_created(tmp_path):
    missing = tmp_path / "nothing-here.sqlite3"
    code, checks, _ = sentinels(f"sqlite:///{missing}")
    assert code == 1
    assert "does not exist" in checks["Database connectivity"]["detail"]
    assert "migrate" in checks["Database connectivity"]["advice"]
    assert not missing.exists()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+asyncpg://aicmo:pw-async@127.0.0.1:5432/aicmo", "names the async driver 'asyncpg'"),
        ("sqlite+aiosqlite:////tmp/aicmo.db", "names the async driver 'aiosqlite'"),
        ("mysql://aicmo:pw-mysql@127.0.0.1/aicmo", "No mysql driver is installed"),
        ("this is not a url", "is not a URL"),
        ("redis://127.0.0.1:6379/0", "Unknown database scheme 'redis'"),
        ("postgres://u:pw-port@127.0.0.1:port/x", "cannot be parsed"),
    ],
)
def test_check_sentinels__unusable_database_url_fails_with_the_reason(url, expected):
    code, checks, output = sentinels(url)
    assert code == 1
    assert checks["DATABASE_URL"]["status"] == "fail"
    assert expected in checks["DATABASE_URL"]["detail"]
    assert "synchronous driver" in checks["DATABASE_URL"]["advice"]
    assert checks["Database connectivity"]["status"] == "fail"
    assert "DATABASE_URL cannot be used" in checks["Database connectivity"]["detail"]
    assert "pw-" not in output


def test_check_sentinels__relative_sqlite_path_warns_and_migrated_db_exits_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AOL_", "OPENAI_", "AICMO_"))}
    env.update({"DATABASE_URL": "sqlite:///rel/aicmo.sqlite3", "DJANGO_SETTINGS_MODULE": "aicmo_site.settings"})
    migrate = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert (tmp_path / "rel" / "aicmo.sqlite3").exists()
    code, checks, _ = sentinels("sqlite:///rel/aicmo.sqlite3", cwd=tmp_path)
    assert checks["DATABASE_URL"]["status"] == "warn"
    assert "is relative" in checks["DATABASE_URL"]["detail"]
    assert checks["Migrations"]["status"] == "pass"
    assert checks["LLM"]["status"] == "skip"  # no key, and no DRAFT_SOCIAL waiting for one
    assert code == 0
    strict, _, _ = sentinels("sqlite:///rel/aicmo.sqlite3", "--fail-on-warn", cwd=tmp_path)
    assert strict == 1


def test_check_sentinels__text_output_is_a_table_with_advice():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AOL_", "OPENAI_", "AICMO_"))}
    env.update({"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x", "DJANGO_SETTINGS_MODULE": "aicmo_site.settings"})
    out = subprocess.run(
        [sys.executable, "manage.py", "check_sentinels", "--no-color"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "CHECK", "STATUS", "DETAIL"]
    row = next(i for i, line in enumerate(lines) if "orchestration.S005" in line)
    assert "FAIL" in lines[row]
    assert lines[row + 1].strip().startswith("→ Check DATABASE_URL")
    assert "failed" in lines[-1]
    assert "CommandError: 1 sentinel(s) failed: Database connectivity." in out.stderr
    assert "Traceback" not in out.stderr
