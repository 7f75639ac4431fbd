"""Optional OpenAI-backed LLM. Disabled, never broken, when no key is set.

``llm.runtime`` (enabled? why not? status) is cheap; ``llm.client`` imports ``openai`` only when a
client is first built.
"""

from llm.runtime import llm_enabled, require_llm, safe_llm_status

__all__ = ["llm_enabled", "require_llm", "safe_llm_status"]
