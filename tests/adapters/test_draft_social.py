"""DRAFT_SOCIAL in-process: payload validation, PROOF drafts through the real openai client, degradation."""

import pytest

from orchestration.adapters import adapter_get, adapters_all
from orchestration.adapters.artifacts import artifact_path, sha256_bytes
from orchestration.exceptions import (
    InvalidPayload,
    LLMUnconfigured,
    PermanentAdapterError,
    RealRunUnconfigured,
    TransientAdapterError,
)
from orchestration.models import Action
from orchestration.services.enqueue import action_enqueue

pytestmark = pytest.mark.django_db

KEY = "sk-test-draft-social-77"
PAYLOAD = {"platform": "linkedin", "brief": "Announce the autumn webinar on 3 October", "tone": "warm"}


@pytest.fixture
def llm_on(settings, openai_server):
    settings.OPENAI_API_KEY = KEY
    settings.AICMO_USE_LLM = True
    settings.OPENAI_BASE_URL = openai_server.base_url
    settings.AICMO_OPENAI_MODEL = "fake-model"
    settings.AICMO_LLM_TIMEOUT_SECONDS = 1.0
    settings.AICMO_LLM_MAX_RETRIES = 0
    return openai_server


def draft(key="draft-1", payload=PAYLOAD) -> Action:
    action, _ = action_enqueue(action_type="DRAFT_SOCIAL", payload=payload, idempotency_key=key)
    return action


def test_adapter_registry__has_draft_social():
    assert adapter_get("DRAFT_SOCIAL") is adapters_all()["DRAFT_SOCIAL"]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"platform": "linkedin"}, "'brief' is required"),
        ({"platform": "linkedin", "brief": "   "}, "'brief' must not be empty"),
        ({"platform": "myspace", "brief": "x"}, "'platform' 'myspace' is not supported"),
        ({"platform": "x", "brief": "y" * 2001}, "'brief' is 2001 characters; the limit is 2000"),
        ({"platform": "x", "brief": "y", "mood": "z"}, "unknown field(s) 'mood'"),
    ],
)
def test_draft_social_enqueue__bad_payload_is_refused_and_nothing_written(payload, error):
    with pytest.raises(InvalidPayload) as caught:
        draft(payload=payload)
    assert error in str(caught.value)
    assert not Action.objects.exists()


def test_draft_social_execute__proof_stores_the_llm_draft_with_its_sha256(llm_on, artifacts_dir):
    action = draft()
    result = adapter_get("DRAFT_SOCIAL").execute(action, proof=True)
    path = artifact_path(result.artifact_ref)
    assert path.parent.parent == artifacts_dir.resolve()
    content = path.read_bytes()
    assert result.artifact_sha256 == sha256_bytes(content)
    text = content.decode()
    assert "--- draft ---\nFresh from the fake model: Announce the autumn webinar on 3 October\n" in text
    assert "model: fake-model" in text and "platform: linkedin" in text
    assert result.message == "PROOF: drafted 67 characters for linkedin with fake-model"
    [request] = llm_on.completions()
    prompt = request["body"]["messages"][-1]["content"]
    assert "Tone: warm" in prompt and "at most 3000 characters" in prompt


def test_draft_social_execute__second_run_reuses_the_stored_draft_without_calling_the_llm(llm_on):
    action = draft()
    first = adapter_get("DRAFT_SOCIAL").execute(action, proof=True)
    second = adapter_get("DRAFT_SOCIAL").execute(action, proof=True)
    assert (second.artifact_ref, second.artifact_sha256) == (first.artifact_ref, first.artifact_sha256)
    assert "already stored by an earlier attempt" in second.message
    assert len(llm_on.completions()) == 1


def test_draft_social_execute__llm_disabled_fails_permanently_with_how_to_enable(settings, openai_server):
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = openai_server.base_url
    action = draft()
    with pytest.raises(LLMUnconfigured) as caught:
        adapter_get("DRAFT_SOCIAL").execute(action, proof=True)
    assert isinstance(caught.value, PermanentAdapterError)
    assert str(caught.value).startswith("LLM disabled, because OPENAI_API_KEY is not set. To enable it, set")
    assert openai_server.completions() == []


def test_draft_social_execute__use_llm_0_fails_permanently(llm_on, settings):
    settings.AICMO_USE_LLM = False
    with pytest.raises(LLMUnconfigured, match="because AICMO_USE_LLM is switched off"):
        adapter_get("DRAFT_SOCIAL").execute(draft(), proof=True)
    assert llm_on.completions() == []


def test_draft_social_execute__server_error_is_transient_and_stores_nothing(llm_on, artifacts_dir):
    llm_on.mode = "500"
    with pytest.raises(TransientAdapterError, match="HTTP 500"):
        adapter_get("DRAFT_SOCIAL").execute(draft(), proof=True)
    assert not (artifacts_dir / "draft_social").exists() or not any((artifacts_dir / "draft_social").iterdir())


def test_draft_social_execute__rejected_key_is_permanent(llm_on):
    llm_on.mode = "401"
    with pytest.raises(PermanentAdapterError) as caught:
        adapter_get("DRAFT_SOCIAL").execute(draft(), proof=True)
    assert KEY not in str(caught.value)


def test_draft_social_execute__long_draft_is_trimmed_to_the_platform_limit(llm_on):
    action = draft(payload={"platform": "twitter", "brief": "b" * 400})
    result = adapter_get("DRAFT_SOCIAL").execute(action, proof=True)
    body = artifact_path(result.artifact_ref).read_text().split("--- draft ---\n", 1)[1].rstrip("\n")
    assert len(body) <= 280
    assert "trimmed" in result.message


def test_draft_social_execute__real_mode_is_refused(llm_on):
    with pytest.raises(RealRunUnconfigured):
        adapter_get("DRAFT_SOCIAL").execute(draft(), proof=False)
    assert llm_on.completions() == []
