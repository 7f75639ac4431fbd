"""The system checks registered in orchestration/checks.py, with their stable ids."""

import pytest

from orchestration.checks import (
    check_artifacts_dir,
    check_database_url,
    check_llm_settings,
    check_real_mode_with_debug,
)
from orchestration.services.control import control_set_proof_mode
from tests.factories import read_only_directory


def ids(messages) -> list[str]:
    return [message.id for message in messages]


def test_check_artifacts_dir__missing_but_creatable_is_fine(settings, tmp_path):
    settings.AOL_ARTIFACTS_DIR = tmp_path / "later" / "artifacts"
    assert check_artifacts_dir() == []


@pytest.mark.parametrize("value", [-1, "lots", 1.5, True])
def test_check_artifacts_dir__min_free_bytes_that_is_not_whole_bytes_is_e022(settings, value):
    settings.AOL_ARTIFACTS_MIN_FREE_BYTES = value
    messages = check_artifacts_dir()
    assert ids(messages) == ["orchestration.E022"]
    assert f"AOL_ARTIFACTS_MIN_FREE_BYTES={value!r} must be a whole number of bytes, 0 or more." == messages[0].msg


@pytest.mark.parametrize("value", [0, 1, 100 * 1024 * 1024])
def test_check_artifacts_dir__min_free_bytes_zero_or_more_is_fine(settings, value):
    settings.AOL_ARTIFACTS_MIN_FREE_BYTES = value
    assert check_artifacts_dir() == []


def test_check_artifacts_dir__cannot_be_created_is_e020(settings, tmp_path):
    (tmp_path / "file").write_text("x")
    settings.AOL_ARTIFACTS_DIR = tmp_path / "file" / "artifacts"
    messages = check_artifacts_dir()
    assert ids(messages) == ["orchestration.E020"]
    assert "cannot be created" in messages[0].msg


def test_check_artifacts_dir__a_file_is_not_a_directory_e021(settings, tmp_path):
    (tmp_path / "file").write_text("x")
    settings.AOL_ARTIFACTS_DIR = tmp_path / "file"
    assert ids(check_artifacts_dir()) == ["orchestration.E021"]


def test_check_database_url__async_driver_is_e010_with_masked_url(settings):
    settings.DATABASE_URL_MASKED = "postgresql+asyncpg://app:***@db/aicmo"
    settings.DATABASE_URL_ISSUES = ["postgresql+asyncpg:// names the async driver 'asyncpg'."]
    [message] = check_database_url()
    assert message.id == "orchestration.E010"
    assert "postgresql+asyncpg://app:***@db/aicmo" in message.msg
    assert "without +asyncpg" in message.hint


def test_check_database_url__relative_sqlite_is_w010(settings):
    settings.DATABASE_URL_MASKED = "sqlite:///rel.db"
    settings.DATABASE_URL_ISSUES = []
    assert ids(check_database_url()) == ["orchestration.W010"]


def test_check_database_url__configured_test_database_is_fine():
    assert check_database_url() == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("AICMO_LLM_TIMEOUT_SECONDS", 0), ("AICMO_LLM_TIMEOUT_SECONDS", "abc"), ("AICMO_LLM_MAX_RETRIES", -1)],
)
def test_check_llm_settings__nonsense_is_e040(settings, name, value):
    setattr(settings, name, value)
    assert ids(check_llm_settings()) == ["orchestration.E040"]


@pytest.mark.django_db
def test_check_real_mode_with_debug__e030_only_in_real_mode_with_debug(settings):
    settings.DEBUG = True
    settings.AOL_PROOF_MODE = False
    assert check_real_mode_with_debug(databases=["default"]) == []  # fresh database: PROOF
    control_set_proof_mode(enabled=False, actor="test", reason="check test")
    assert ids(check_real_mode_with_debug(databases=["default"])) == ["orchestration.E030"]
    assert check_real_mode_with_debug(databases=None) == []  # not asked to touch the database
    settings.DEBUG = False
    assert check_real_mode_with_debug(databases=["default"]) == []


def test_check_artifacts_dir__unwritable_directory_is_only_a_warning_w021(settings, tmp_path):
    """The daemon may start: its PROOF attempts fail transiently until the directory is writable."""
    settings.AOL_ARTIFACTS_DIR = tmp_path / "ro"
    settings.AOL_ARTIFACTS_DIR.mkdir()
    with read_only_directory(settings.AOL_ARTIFACTS_DIR):
        assert ids(check_artifacts_dir()) == ["orchestration.W021"]


def test_check_approval_notifications__webhook_url_without_secret_or_not_http_warns_bad_threshold_errors(settings):
    from orchestration.checks import check_approval_notifications

    assert check_approval_notifications() == []
    settings.AOL_APPROVAL_WEBHOOK_URL = "https://chat.example.com/hooks/T0/B0/secretpath"
    settings.APPROVAL_WEBHOOK_SECRET = ""
    (warning,) = check_approval_notifications()
    assert warning.id == "orchestration.W096" and "AOL_APPROVAL_WEBHOOK_SECRET is not" in warning.msg
    assert "secretpath" not in warning.msg
    settings.APPROVAL_WEBHOOK_SECRET = "s3cret"
    assert check_approval_notifications() == []
    settings.AOL_APPROVAL_WEBHOOK_URL = "ftp://chat.example.com/x"
    assert [m.id for m in check_approval_notifications()] == ["orchestration.W096"]
    settings.AOL_APPROVAL_WEBHOOK_URL = ""
    settings.AOL_APPROVAL_DIGEST_THRESHOLD = 0
    assert [m.id for m in check_approval_notifications()] == ["orchestration.E097"]
