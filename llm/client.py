"""The LLM client: the ``openai`` package (imported lazily), with timeouts and bounded retries.

The LLM degrades in exactly one place, ``llm_client_get()``: it returns a ready client or raises
LLMDisabled saying "LLM disabled, because …" and how to enable it. Callers branch once on that.
"""

import functools
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from llm.exceptions import LLMCallFailed
from llm.outcomes import llm_call_record
from llm.runtime import DEFAULT_MODEL, llm_base_url_masked, require_llm

logger = logging.getLogger("llm")


@dataclass(frozen=True)
class LLMClient:
    """A configured chat-completions client. ``complete`` raises LLMCallFailed, never a library error."""

    model: str
    timeout_seconds: float
    max_retries: int
    base_url_masked: str
    _openai: Any = field(repr=False)
    _secret: str = field(repr=False)

    def complete(self, *, system: str, prompt: str, max_tokens: int = 400) -> str:
        """The model's reply to ``prompt``; at most about timeout × (retries + 1) seconds."""
        import openai

        where = self.base_url_masked or "the OpenAI API"
        try:
            response = self._openai.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                max_tokens=max_tokens,
            )
        except openai.APITimeoutError:
            raise self._failed(
                f"the LLM at {where} did not answer within {self.timeout_seconds:g}s "
                f"({self.max_retries + 1} attempt(s))",
                transient=True,
            ) from None
        except openai.APIConnectionError as exc:
            raise self._failed(f"could not connect to the LLM at {where}: {exc}", transient=True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status in (401, 403):
                hint = "the API key was rejected; check OPENAI_API_KEY"
            elif status == 404:
                hint = f"not found; check AICMO_OPENAI_MODEL={self.model} and OPENAI_BASE_URL"
            else:
                hint = _error_text(exc)
            transient = status == 408 or status == 409 or status == 429 or status >= 500
            suffix = f" after {self.max_retries + 1} attempt(s)" if transient else ""
            raise self._failed(
                f"the LLM at {where} answered HTTP {status}{suffix}: {hint}", transient=transient
            ) from None
        except openai.OpenAIError as exc:
            raise self._failed(f"the LLM call failed: {type(exc).__name__}: {exc}", transient=True) from None
        choices = getattr(response, "choices", None) or []
        text = (choices[0].message.content or "").strip() if choices else ""
        if not text:
            raise self._failed(f"the LLM at {where} returned an empty reply", transient=True)
        llm_call_record(ok=True, model=self.model)
        return text

    def _failed(self, message: str, *, transient: bool) -> LLMCallFailed:
        # Servers echo parts of a rejected key back; the key never leaves this object.
        if self._secret:
            message = message.replace(self._secret, "***")
        logger.warning("llm call failed model=%s transient=%s error=%s", self.model, transient, message)
        llm_call_record(ok=False, model=self.model, error=message)
        return LLMCallFailed(message, transient=transient)


def _error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    return str(getattr(exc, "message", "") or exc)[:300]


def llm_client_get() -> LLMClient:
    """The LLM client for the current settings (memoised), or LLMDisabled saying why and how to enable it."""
    require_llm()
    return _build_client(
        api_key=settings.OPENAI_API_KEY,
        base_url=getattr(settings, "OPENAI_BASE_URL", "") or "",
        model=getattr(settings, "AICMO_OPENAI_MODEL", "") or DEFAULT_MODEL,
        timeout_seconds=float(getattr(settings, "AICMO_LLM_TIMEOUT_SECONDS", 20.0)),
        max_retries=int(getattr(settings, "AICMO_LLM_MAX_RETRIES", 1)),
    )


@functools.lru_cache(maxsize=4)
def _build_client(*, api_key: str, base_url: str, model: str, timeout_seconds: float, max_retries: int) -> LLMClient:
    # Keyed on the settings, so override_settings or a changed key gets a new client.
    import openai

    if base_url and not urlsplit(base_url).scheme:
        base_url = f"https://{base_url}"
    client = openai.OpenAI(
        api_key=api_key,
        base_url=base_url or None,
        timeout=openai.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)),
        max_retries=max_retries,
    )
    logger.info("llm client ready model=%s base_url=%s", model, llm_base_url_masked() or "default")
    return LLMClient(
        model=model,
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
        base_url_masked=llm_base_url_masked(),
        _openai=client,
        _secret=api_key,
    )
