"""Whether the LLM may be used, why not, and a secret-free status for diagnostics.

Cheap and import-light: nothing here imports the ``openai`` package (llm/client.py does, lazily).
"""

from collections.abc import Callable
from typing import Any

from django.conf import settings

from llm.exceptions import LLMDisabled

DEFAULT_MODEL = "gpt-4o-mini"
ENABLE_HOWTO = (
    "To enable it, set OPENAI_API_KEY (and keep AICMO_USE_LLM unset or 1) in the environment of the web and "
    "daemon processes, e.g. OPENAI_API_KEY=sk-… AICMO_USE_LLM=1; optionally AICMO_OPENAI_MODEL (default "
    f"{DEFAULT_MODEL}) and OPENAI_BASE_URL for an OpenAI-compatible server. Then restart them."
)


def _key_present() -> bool:
    return bool(getattr(settings, "OPENAI_API_KEY", ""))


def _switched_on() -> bool:
    return bool(getattr(settings, "AICMO_USE_LLM", True))


def llm_disabled_reason() -> str:
    """Why the LLM is disabled ('' when it is enabled)."""
    if not _switched_on():
        return "AICMO_USE_LLM is switched off (0)"
    if not _key_present():
        return "OPENAI_API_KEY is not set"
    return ""


def llm_enabled() -> bool:
    """True only when an API key is set and AICMO_USE_LLM is not switched off."""
    return not llm_disabled_reason()


def require_llm() -> None:
    """Raise LLMDisabled, saying exactly how to enable the LLM, unless it is enabled."""
    reason = llm_disabled_reason()
    if reason:
        raise LLMDisabled(f"LLM disabled, because {reason}. {ENABLE_HOWTO}")


def llm_base_url_masked() -> str:
    """OPENAI_BASE_URL with any credentials in it masked ('' when unset: the OpenAI default)."""
    from orchestration.dburl import mask_url

    return mask_url(getattr(settings, "OPENAI_BASE_URL", "") or "")


def safe_llm_status() -> dict[str, Any]:
    """Enabled or not and why, the model, whether a key is present (never the key), the masked base URL."""
    reason = llm_disabled_reason()
    return {
        "enabled": not reason,
        "reason": _status_reason(reason),
        "model": getattr(settings, "AICMO_OPENAI_MODEL", "") or DEFAULT_MODEL,
        "key_present": _key_present(),
        "base_url": llm_base_url_masked(),
        "timeout_seconds": _number("AICMO_LLM_TIMEOUT_SECONDS", 20.0, float),
        "max_retries": _number("AICMO_LLM_MAX_RETRIES", 1, int),
    }


def _status_reason(reason: str) -> str:
    """'enabled', or why not, starting with 'not configured' when there is simply no key."""
    if not reason:
        return "enabled"
    return f"not configured: {reason}" if not _key_present() else f"disabled, because {reason}"


def _number(name: str, default: float, cast: Callable[[Any], float]) -> object:
    """The setting as a number; a malformed value is shown as it is (orchestration.E040 reports it)."""
    value = getattr(settings, name, default)
    try:
        return cast(value)
    except (TypeError, ValueError):
        return value
