"""llm.runtime: enabled only with a key and the switch on; a disabled LLM says how to enable it."""

import subprocess
import sys

import pytest

from llm.exceptions import LLMDisabled
from llm.runtime import llm_enabled, require_llm, safe_llm_status
from tests.conftest import ROOT

KEY = "sk-test-runtime-0123456789"


def test_llm_enabled__false_without_a_key(settings):
    settings.OPENAI_API_KEY = ""
    assert llm_enabled() is False


def test_llm_enabled__true_with_a_key(settings):
    settings.OPENAI_API_KEY = KEY
    settings.AICMO_USE_LLM = True
    assert llm_enabled() is True


def test_llm_enabled__false_when_switched_off_even_with_a_key(settings):
    settings.OPENAI_API_KEY = KEY
    settings.AICMO_USE_LLM = False
    assert llm_enabled() is False


def test_require_llm__without_a_key_says_which_variable_to_set(settings):
    settings.OPENAI_API_KEY = ""
    with pytest.raises(LLMDisabled) as caught:
        require_llm()
    message = str(caught.value)
    assert message.startswith("LLM disabled, because OPENAI_API_KEY is not set.")
    assert "OPENAI_API_KEY=sk-" in message and "AICMO_USE_LLM=1" in message


def test_require_llm__switched_off_names_the_switch(settings):
    settings.OPENAI_API_KEY = KEY
    settings.AICMO_USE_LLM = False
    with pytest.raises(LLMDisabled, match="because AICMO_USE_LLM is switched off"):
        require_llm()


def test_require_llm__enabled_returns_quietly(settings):
    settings.OPENAI_API_KEY = KEY
    settings.AICMO_USE_LLM = True
    require_llm()


def test_safe_llm_status__reports_key_presence_never_the_key(settings):
    settings.OPENAI_API_KEY = KEY
    settings.AICMO_USE_LLM = True
    settings.AICMO_OPENAI_MODEL = "gpt-test"
    settings.OPENAI_BASE_URL = "https://proxyuser:proxypass@llm.example.com/v1"
    status = safe_llm_status()
    assert status["enabled"] is True and status["reason"] == "enabled"
    assert status["key_present"] is True
    assert status["model"] == "gpt-test"
    assert status["base_url"] == "https://proxyuser:***@llm.example.com/v1"
    assert KEY not in repr(status) and "proxypass" not in repr(status)


def test_safe_llm_status__disabled_without_key(settings):
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    status = safe_llm_status()
    assert status["enabled"] is False
    assert status["key_present"] is False
    assert status["reason"] == "not configured: OPENAI_API_KEY is not set"
    assert status["model"]  # the default model is still reported


def test_llm_runtime__imports_and_answers_without_loading_openai():
    code = (
        "import sys, django; django.setup(); from llm.runtime import llm_enabled, safe_llm_status; "
        "llm_enabled(); safe_llm_status(); import orchestration.adapters; "
        "print('openai' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "aicmo_site.settings", "PATH": "/usr/bin:/bin", "OPENAI_API_KEY": KEY},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_safe_llm_status__malformed_timeout_is_shown_not_raised(settings):
    settings.AICMO_LLM_TIMEOUT_SECONDS = "soon"
    assert safe_llm_status()["timeout_seconds"] == "soon"
