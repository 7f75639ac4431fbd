"""Whether the LLM may be used, and a secret-free status for diagnostics."""

from django.conf import settings


def llm_enabled() -> bool:
    """True only when an API key is set and AICMO_USE_LLM is not switched off."""
    return bool(getattr(settings, "OPENAI_API_KEY", "")) and bool(getattr(settings, "AICMO_USE_LLM", True))


def safe_llm_status() -> dict:
    """Enabled or not and why, the model, and whether a key is present (never the key itself)."""
    key_present = bool(getattr(settings, "OPENAI_API_KEY", ""))
    use_llm = bool(getattr(settings, "AICMO_USE_LLM", True))
    if not key_present:
        reason = "not configured: OPENAI_API_KEY is not set"
    elif not use_llm:
        reason = "switched off: AICMO_USE_LLM=0"
    else:
        reason = "enabled"
    return {
        "enabled": key_present and use_llm,
        "reason": reason,
        "model": getattr(settings, "AICMO_OPENAI_MODEL", "gpt-4o-mini"),
        "key_present": key_present,
    }
