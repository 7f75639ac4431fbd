"""Optional OpenAI-backed LLM. Disabled, never broken, when no key is set."""

from llm.runtime import llm_enabled, safe_llm_status

__all__ = ["llm_enabled", "safe_llm_status"]
