"""DRAFT_SOCIAL end to end: a real run_aol_daemon process, the real openai client, a local fake server."""

import pytest

from orchestration.adapters.artifacts import artifact_path, sha256_bytes
from orchestration.models import Action, ActionStatus, ExecutionLog, TickLedger
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until

# The LLM's failure handling, not the database: once, on SQLite.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

KEY = "sk-test-daemon-e2e-31337"


def llm_env(server, **extra) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": server.base_url,
        "AICMO_USE_LLM": "1",
        "AICMO_OPENAI_MODEL": "fake-model",
        "AICMO_LLM_TIMEOUT_SECONDS": "1",
        "AICMO_LLM_MAX_RETRIES": "0",
        **extra,
    }


def enqueue_draft(key: str = "draft-e2e") -> Action:
    action, _ = action_enqueue(
        action_type="DRAFT_SOCIAL",
        payload={"platform": "linkedin", "brief": "Invite customers to the product day"},
        idempotency_key=key,
    )
    return action


def test_draft_social_daemon__proof_draft_is_stored_with_its_sha256(start_daemon, openai_server):
    action = enqueue_draft()
    daemon = start_daemon("--proof", "--ticks", "2", env=llm_env(openai_server))
    assert daemon.wait(timeout=60) == 0, daemon.output()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    log = ExecutionLog.objects.get(action_id=action.pk, artifact_sha256__gt="")
    content = artifact_path(log.artifact_ref).read_bytes()
    assert sha256_bytes(content) == log.artifact_sha256
    assert b"Fresh from the fake model: Invite customers to the product day" in content
    assert openai_server.completions()[0]["authorization"] == f"Bearer {KEY}"


def test_draft_social_daemon__without_key_fails_permanently_and_the_daemon_carries_on(start_daemon, openai_server):
    drafted = enqueue_draft()
    posted, _ = action_enqueue(
        action_type="POST_SOCIAL", payload={"platform": "twitter", "message": "still works"}, idempotency_key="p1"
    )
    env = llm_env(openai_server, OPENAI_API_KEY="")
    daemon = start_daemon("--proof", "--ticks", "2", env=env)
    assert daemon.wait(timeout=60) == 0, daemon.output()
    drafted.refresh_from_db()
    posted.refresh_from_db()
    assert drafted.status == ActionStatus.DLQ
    assert drafted.attempts == 1  # permanent: not retried
    assert "LLM disabled, because OPENAI_API_KEY is not set. To enable it, set OPENAI_API_KEY" in drafted.last_error
    assert posted.status == ActionStatus.SUCCESS
    assert openai_server.completions() == []


def test_draft_social_daemon__use_llm_0_fails_permanently(start_daemon, openai_server):
    drafted = enqueue_draft()
    daemon = start_daemon("--proof", "--ticks", "1", env=llm_env(openai_server, AICMO_USE_LLM="0"))
    assert daemon.wait(timeout=60) == 0, daemon.output()
    drafted.refresh_from_db()
    assert drafted.status == ActionStatus.DLQ
    assert "because AICMO_USE_LLM is switched off" in drafted.last_error


@pytest.mark.parametrize(("mode", "error"), [("500", "HTTP 500"), ("hang", "did not answer within 1s")])
def test_draft_social_daemon__server_failure_is_bounded_retried_and_then_succeeds(
    start_daemon, openai_server, mode, error
):
    openai_server.mode = mode
    action = enqueue_draft()
    daemon = start_daemon("--proof", env=llm_env(openai_server, AOL_MAX_ATTEMPTS="5"))
    wait_until(
        lambda: Action.objects.filter(pk=action.pk, status=ActionStatus.RETRY, last_error__contains=error).exists(),
        timeout=30,
        message=f"action in RETRY with {error!r}",
    )
    ticks_before = TickLedger.objects.count()
    wait_until(lambda: TickLedger.objects.count() > ticks_before, timeout=15, message="daemon still ticking")
    assert daemon.proc.poll() is None, daemon.output()
    openai_server.mode = "ok"
    wait_until(
        lambda: Action.objects.filter(pk=action.pk, status=ActionStatus.SUCCESS).exists(),
        timeout=30,
        message="action drafted once the server recovers",
    )
    action.refresh_from_db()
    assert action.attempts >= 2
    assert daemon.proc.poll() is None
