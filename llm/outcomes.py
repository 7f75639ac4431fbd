"""The outcome of LLM calls, recorded by the client and read by the status snapshot (``llm_status``)."""

import logging
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from llm.runtime import safe_llm_status

logger = logging.getLogger("llm")


def llm_call_record(*, ok: bool, model: str, error: str = "") -> None:
    """Remember the latest call's outcome (one row). Never raises: a call's result matters more than its record."""
    from llm.models import LLMLastCall

    now = timezone.now()
    try:
        with transaction.atomic():
            changed = LLMLastCall.objects.filter(pk=LLMLastCall.SINGLETON_ID).update(
                ok=ok,
                at=now,
                model=model[:100],
                error=error,
                failures_in_row=0 if ok else F("failures_in_row") + 1,
                **({"last_success_at": now} if ok else {}),
            )
            if not changed:
                LLMLastCall.objects.create(
                    ok=ok,
                    at=now,
                    model=model[:100],
                    error=error,
                    failures_in_row=0 if ok else 1,
                    last_success_at=now if ok else None,
                )
    except (DatabaseError, RuntimeError) as exc:  # RuntimeError: no database in this context (a unit test)
        logger.warning("llm call outcome not recorded: %s", type(exc).__name__)


def llm_status() -> dict[str, Any]:
    """``safe_llm_status()`` plus the latest call's outcome, with ``reason`` telling the truth about it.

    While enabled: "enabled; last call succeeded at …", "enabled, but the last N call(s) failed; the
    latest at …: <why>", or "enabled; not called yet".
    """
    from llm.models import LLMLastCall

    status = safe_llm_status()
    last = LLMLastCall.objects.filter(pk=LLMLastCall.SINGLETON_ID).first()
    status["last_call"] = (
        None
        if last is None
        else {
            "ok": last.ok,
            "at": last.at.isoformat(),
            "model": last.model,
            "error": last.error,
            "failures_in_row": last.failures_in_row,
            "last_success_at": last.last_success_at.isoformat() if last.last_success_at else None,
        }
    )
    status["calls_failing"] = bool(status["enabled"] and last is not None and not last.ok)
    if status["enabled"]:
        if last is None:
            status["reason"] = "enabled; not called yet"
        elif last.ok:
            status["reason"] = f"enabled; last call succeeded at {_when(last.at)}"
        else:
            status["reason"] = (
                f"enabled, but the last {last.failures_in_row} call(s) failed; the latest at {_when(last.at)}: "
                f"{last.error}"
            )
    return status


def _when(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"
