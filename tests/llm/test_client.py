"""llm.client against a real OpenAI-compatible HTTP server on 127.0.0.1, through the real openai client."""

import time

import pytest

from llm.client import llm_client_get
from llm.exceptions import LLMCallFailed, LLMDisabled

KEY = "sk-test-client-KEY-5f1c2a"


@pytest.fixture
def llm_settings(settings, openai_server):
    settings.OPENAI_API_KEY = KEY
    settings.AICMO_USE_LLM = True
    settings.OPENAI_BASE_URL = openai_server.base_url
    settings.AICMO_OPENAI_MODEL = "fake-model"
    settings.AICMO_LLM_TIMEOUT_SECONDS = 1.0
    settings.AICMO_LLM_MAX_RETRIES = 1
    return settings


def test_llm_client_get__disabled_without_key_says_why(settings):
    settings.OPENAI_API_KEY = ""
    with pytest.raises(LLMDisabled, match="LLM disabled, because OPENAI_API_KEY is not set"):
        llm_client_get()


def test_llm_client_get__is_memoised_per_configuration(llm_settings):
    first = llm_client_get()
    assert llm_client_get() is first
    llm_settings.AICMO_OPENAI_MODEL = "another-model"
    assert llm_client_get() is not first
    assert llm_client_get().model == "another-model"


def test_llm_client_complete__ok_sends_key_model_and_prompt(llm_settings, openai_server):
    reply = llm_client_get().complete(system="be brief", prompt="Brief: launch the spring range")
    assert reply == "Fresh from the fake model: launch the spring range"
    [request] = openai_server.completions()
    assert request["authorization"] == f"Bearer {KEY}"
    assert request["body"]["model"] == "fake-model"
    assert request["body"]["messages"][0] == {"role": "system", "content": "be brief"}


def test_llm_client_complete__server_500_is_transient_after_bounded_retries(llm_settings, openai_server):
    openai_server.mode = "500"
    with pytest.raises(LLMCallFailed) as caught:
        llm_client_get().complete(system="s", prompt="Brief: x")
    assert caught.value.transient is True
    assert "HTTP 500 after 2 attempt(s)" in str(caught.value)
    assert "the model server fell over" in str(caught.value)
    assert len(openai_server.completions()) == 2  # one try + AICMO_LLM_MAX_RETRIES=1


def test_llm_client_complete__hang_gives_up_within_the_bound(llm_settings, openai_server):
    openai_server.mode = "hang"
    started = time.monotonic()
    with pytest.raises(LLMCallFailed) as caught:
        llm_client_get().complete(system="s", prompt="Brief: x")
    elapsed = time.monotonic() - started
    assert caught.value.transient is True
    assert "did not answer within 1s (2 attempt(s))" in str(caught.value)
    # 2 attempts × 1 s plus the client's short backoff; generous margin for a busy machine.
    assert elapsed < 10


def test_llm_client_complete__rejected_key_is_permanent_and_never_echoed(llm_settings, openai_server):
    openai_server.mode = "401"
    with pytest.raises(LLMCallFailed) as caught:
        llm_client_get().complete(system="s", prompt="Brief: x")
    assert caught.value.transient is False
    assert "HTTP 401" in str(caught.value) and "check OPENAI_API_KEY" in str(caught.value)
    assert KEY not in str(caught.value)
    assert len(openai_server.completions()) == 1  # not retried


def test_llm_client_complete__connection_refused_is_transient(llm_settings):
    llm_settings.OPENAI_BASE_URL = "http://127.0.0.1:1/v1"
    with pytest.raises(LLMCallFailed) as caught:
        llm_client_get().complete(system="s", prompt="Brief: x")
    assert caught.value.transient is True
    assert "could not connect to the LLM at http://127.0.0.1:1/v1" in str(caught.value)
