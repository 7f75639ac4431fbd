"""DATABASE_URL validation and masking, and how the project behaves with an unusable URL."""

import os
import subprocess
import sys

import pytest

from orchestration.dburl import mask_url, mask_urls_in_text, url_for_django, validate_database_url
from tests.conftest import ROOT

# URL parsing and masking, and processes given their own URLs: the same on either half, so once.
pytestmark = pytest.mark.sqlite_only


@pytest.mark.parametrize(
    ("url", "valid", "scheme", "driver", "issue", "warning"),
    [
        ("postgres://u:p@db:5432/aicmo", True, "postgres", None, None, None),
        ("postgresql://u@db/aicmo", True, "postgresql", None, None, None),
        ("sqlite:////var/lib/aicmo/db.sqlite3", True, "sqlite", None, None, None),
        ("postgresql+psycopg2://u:p@db/aicmo", True, "postgresql", "psycopg2", None, "SQLAlchemy syntax"),
        ("postgresql+asyncpg://u:p@db/aicmo", False, "postgresql", "asyncpg", "async driver 'asyncpg'", None),
        ("sqlite+aiosqlite:////tmp/x.db", False, "sqlite", "aiosqlite", "async driver 'aiosqlite'", None),
        ("mysql://u:p@db/aicmo", False, "mysql", None, "No mysql driver is installed", None),
        ("postgresql+pg8000://u@db/aicmo", False, "postgresql", "pg8000", "Unknown driver 'pg8000'", None),
        ("mongodb://db/aicmo", False, "mongodb", None, "Unknown database scheme 'mongodb'", None),
        ("just some words", False, "", None, "is not a URL", None),
        ("", False, "", None, "is empty", None),
        ("postgres://u@db", False, "postgres", None, "No database name", None),
        ("postgres://u@db:99999/x", False, "postgres", None, "cannot be parsed", None),
        ("sqlite:///relative/db.sqlite3", True, "sqlite", None, None, "is relative"),
        ("sqlite://", True, "sqlite", None, None, "in-memory"),
    ],
)
def test_validate_database_url__verdicts(url, valid, scheme, driver, issue, warning):
    result = validate_database_url(url)
    assert result["valid"] is valid
    assert result["scheme"] == scheme
    assert result["driver"] == driver
    if issue:
        assert any(issue in text for text in result["issues"]), result["issues"]
    else:
        assert result["issues"] == []
    if warning:
        assert any(warning in text for text in result["warnings"]), result["warnings"]


def test_validate_database_url__async_driver_also_reports_the_missing_module():
    issues = validate_database_url("postgresql+asyncpg://u@db/x")["issues"]
    assert any("'asyncpg' named in the URL is not installed" in issue for issue in issues)


def test_validate_database_url__never_returns_the_password():
    for url in ("postgresql+asyncpg://u:hunter2@db/x", "postgres://u:hunter2@db:port/x", "mysql://u:hunter2@db/x"):
        assert "hunter2" not in repr(validate_database_url(url))


def test_validate_database_url__none_checks_the_configured_url(settings):
    settings.DATABASE_URL_MASKED = "postgresql+asyncpg://u:***@db/x"
    assert validate_database_url()["driver"] == "asyncpg"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgres://aicmo:s3cret@db:5432/aicmo", "postgres://aicmo:***@db:5432/aicmo"),
        ("postgres://aicmo:p@ss@db/aicmo", "postgres://aicmo:***@db/aicmo"),
        ("postgres://:s3cret@db/aicmo", "postgres://:***@db/aicmo"),
        ("postgres://aicmo@db/aicmo", "postgres://aicmo@db/aicmo"),
        ("postgres://u@db/x?password=s3cret&sslmode=require", "postgres://u@db/x?password=***&sslmode=require"),
        ("aicmo:s3cret@db/aicmo", "***@db/aicmo"),
        ("localhost", "localhost"),
        ("sqlite:////abs/db.sqlite3", "sqlite:////abs/db.sqlite3"),
        ("", ""),
    ],
)
def test_mask_url__hides_the_password_and_keeps_the_rest(url, masked):
    assert mask_url(url) == masked


def test_mask_urls_in_text__masks_every_url_in_a_message():
    text = "could not use postgres://a:one@h/x, nor mysql://b:two@h/y"
    assert mask_urls_in_text(text) == "could not use postgres://a:***@h/x, nor mysql://b:***@h/y"


def test_url_for_django__drops_only_synchronous_driver_suffixes():
    assert url_for_django("postgresql+psycopg2://u@h/x") == "postgresql://u@h/x"
    assert url_for_django("postgresql+asyncpg://u@h/x") == "postgresql+asyncpg://u@h/x"


def manage(*args: str, database_url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AOL_", "OPENAI_"))}
    env.update({"DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "aicmo_site.settings"})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "url", "check_id"),
    [
        (["check"], "postgresql+asyncpg://app:pw-check@127.0.0.1/aicmo", "orchestration.E010"),
        (["migrate"], "sqlite+aiosqlite:////tmp/aicmo-never-created.db", "orchestration.E010"),
        (
            ["run_aol_daemon", "--ticks", "1"],
            "postgresql+asyncpg://app:pw-daemon@127.0.0.1/aicmo",
            "orchestration.E010",
        ),
        (["aol_status"], "not a url with pw-garbage@", "orchestration.E011"),
        (["check"], "mysql://app:pw-mysql@127.0.0.1/aicmo", "orchestration.E011"),
    ],
)
def test_unusable_database_url__commands_stop_with_the_check_message_not_a_traceback(args, url, check_id):
    out = manage(*args, database_url=url)
    output = out.stdout + out.stderr
    assert out.returncode == 1, output
    assert f"({check_id}) DATABASE_URL=" in output
    assert "Traceback" not in output
    assert "pw-" not in output


def test_unusable_database_url__database_access_raises_a_clear_error():
    code = (
        "from orchestration.models import Action\n"
        "try:\n Action.objects.count()\n"
        "except Exception as e: print(type(e).__name__, e)"
    )
    out = manage("shell", "-c", code, database_url="postgresql+asyncpg://u:pw-shell@127.0.0.1/x")
    assert "ImproperlyConfigured DATABASE_URL cannot be used: postgresql+asyncpg://" in out.stdout
    assert "check_sentinels" in out.stdout
    assert "pw-shell" not in out.stdout + out.stderr
