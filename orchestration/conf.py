"""Lazy access to the AOL settings, and the per-action-type settings built on them.

Settings are read when used, never at import time, so ``override_settings`` works in tests and a
management command sees the values of the process it runs in.

Per-action-type settings (AOL_ACTION_TYPES) and the approval gate's types (AOL_APPROVAL_REQUIRED_TYPES)
are resolved here too, and validated by the system checks ``orchestration.E070`` and ``E071``, so a
daemon refuses to start on a mistake. See docs/flow-control.md.
"""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

DEFAULTS = {
    "AOL_PROOF_MODE": False,
    "AOL_MAX_TICKS": None,
    "AOL_MAX_ACTIONS_PER_TICK": 3,
    "AOL_CLAIM_BATCH_SIZE": 100,
    "AOL_MAX_TICK_SECONDS": 20.0,
    "AOL_MAX_ATTEMPTS": 3,
    "AOL_RETRY_BACKOFF_SECONDS": 5.0,
    "AOL_HEARTBEAT_SECONDS": 5.0,
    "AOL_LEASE_TTL_SECONDS": 30.0,
    "AOL_TICK_INTERVAL_SECONDS": 5.0,
    "AOL_CONTROL_POLL_SECONDS": 0.5,
    "AOL_WAKE_ON_ENQUEUE": True,
    "AOL_MAX_PAYLOAD_BYTES": 64 * 1024,
    "AOL_ARTIFACTS_DIR": None,
    "AOL_METRICS_TOKEN": "",
    "AOL_CONSOLE_REFRESH_SECONDS": 3.0,
    "AOL_MAX_ABANDONED_THREADS": 3,
    "AOL_EXTRA_ADAPTERS": (),
    # Retention (issue 7): see orchestration/services/retention.py and docs/flow-control.md.
    "AOL_RETENTION_ACTIONS_DAYS": 30,
    "AOL_RETENTION_LOGS_DAYS": 30,
    "AOL_RETENTION_TICKS_DAYS": 7,
    "AOL_RETENTION_ARTIFACTS_DAYS": 30,
    "AOL_PRUNE_BATCH_SIZE": 1000,
    "AOL_WARN_ROWS": 1_000_000,
    "AOL_WARN_ARTIFACTS_MB": 1024,
    # Flow control (docs/flow-control.md)
    "AOL_ACTION_TYPES": {},
    "AOL_APPROVAL_REQUIRED_TYPES": None,  # None: DEFAULT_APPROVAL_REQUIRED_TYPES (unknown names ignored)
    "AOL_RATE_LIMITS": (),
}


class AolSettings:
    """``aol.max_attempts`` reads ``settings.AOL_MAX_ATTEMPTS`` (or its default) at call time."""

    def __getattr__(self, name: str):
        key = f"AOL_{name.upper()}"
        if key not in DEFAULTS:
            raise AttributeError(name)
        return getattr(settings, key, DEFAULTS[key])

    @property
    def artifacts_dir(self) -> Path:
        configured = getattr(settings, "AOL_ARTIFACTS_DIR", None)
        return Path(configured) if configured else Path(settings.BASE_DIR) / "var" / "artifacts"


aol = AolSettings()


# --- Per-action-type settings ------------------------------------------------------------------------------

BACKOFFS = ("fixed", "linear", "exponential")
#: What happens to an attempt whose outcome is unknown (its daemon died, or it overran):
#: auto: retry PROOF attempts and idempotent adapters, park REAL attempts of the others for review;
#: retry: always retry (the operator vouches the REAL effect is safe to repeat);
#: needs_review: park every REAL attempt for a person (PROOF attempts are still retried).
ORPHAN_POLICIES = ("auto", "retry", "needs_review")
#: Action types gated by approval in REAL mode when AOL_APPROVAL_REQUIRED_TYPES is not set. Names
#: of types that do not exist (yet) are ignored here, and only here.
DEFAULT_APPROVAL_REQUIRED_TYPES = ("POST_SOCIAL", "SEND_EMAIL")
#: The longest backoff accepted, and the cap when exponential backoff sets none (a day).
MAX_BACKOFF_SECONDS = 86400.0


@dataclass(frozen=True)
class ActionTypeSettings:
    """The settings of one action type: its AOL_ACTION_TYPES entry over the global settings.

    ``AOL_ACTION_TYPES = {"POST_SOCIAL": {"max_attempts": 5, "backoff": "exponential",
    "backoff_seconds": 10, "backoff_max_seconds": 3600, "jitter": 0.2, "timeout_seconds": 30,
    "orphan_policy": "needs_review"}}``: every field is optional; what is left out keeps the global
    behaviour (AOL_MAX_ATTEMPTS, linear backoff of AOL_RETRY_BACKOFF_SECONDS per attempt, no jitter,
    the tick budget as the only deadline, the automatic orphan policy).
    """

    action_type: str
    max_attempts: int
    backoff: str = "linear"
    backoff_seconds: float = 5.0
    backoff_max_seconds: float | None = None
    jitter: float = 0.0
    timeout_seconds: float | None = None
    orphan_policy: str = "auto"

    def backoff_for(self, *, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next attempt, after ``attempts`` attempts were made."""
        attempts = max(attempts, 1)
        if self.backoff == "fixed":
            delay = self.backoff_seconds
        elif self.backoff == "exponential":
            delay = self.backoff_seconds * 2 ** min(attempts - 1, 40)
        else:
            delay = self.backoff_seconds * attempts
        cap = self.backoff_max_seconds
        if cap is None and self.backoff == "exponential":
            cap = MAX_BACKOFF_SECONDS
        if cap is not None:
            delay = min(delay, cap)
        if self.jitter:
            delay *= (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return max(delay, 0.0)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


#: field → (is it valid?, what it must be)
FIELDS = {
    "max_attempts": (_positive_int, "a whole number greater than zero"),
    "backoff": (lambda v: v in BACKOFFS, f"one of {', '.join(BACKOFFS)}"),
    "backoff_seconds": (lambda v: _number(v) and 0 <= v <= MAX_BACKOFF_SECONDS, "a number of seconds from 0 to 86400"),
    "backoff_max_seconds": (
        lambda v: v is None or (_number(v) and 0 < v <= MAX_BACKOFF_SECONDS),
        "a number of seconds greater than 0 and at most 86400, or null",
    ),
    "jitter": (lambda v: _number(v) and 0 <= v <= 1, "a fraction from 0 to 1 (0.2: ±20%)"),
    "timeout_seconds": (
        lambda v: v is None or (_number(v) and 0 < v < float("inf")),
        "a number of seconds > 0, or null",
    ),
    "orphan_policy": (lambda v: v in ORPHAN_POLICIES, f"one of {', '.join(ORPHAN_POLICIES)}"),
}


def action_type_settings_problems() -> list[str]:
    """What is wrong with AOL_ACTION_TYPES (for the system check orchestration.E070)."""
    from orchestration.adapters import adapters_all

    configured = aol.action_types
    if configured in (None, ""):
        return []
    if isinstance(configured, str):
        return [f"AOL_ACTION_TYPES={configured[:80]!r} is not a JSON object."]
    if not isinstance(configured, dict):
        return [
            f"AOL_ACTION_TYPES must be an object mapping action types to settings, not {type(configured).__name__}."
        ]
    known = adapters_all()
    problems = []
    for action_type, entry in configured.items():
        if action_type not in known:
            problems.append(
                f"AOL_ACTION_TYPES: unknown action type {action_type!r} (known: {', '.join(sorted(known))})."
            )
            continue
        if not isinstance(entry, dict):
            problems.append(f"AOL_ACTION_TYPES[{action_type!r}] must be an object, not {type(entry).__name__}.")
            continue
        for name, value in entry.items():
            if name not in FIELDS:
                problems.append(
                    f"AOL_ACTION_TYPES[{action_type!r}]: unknown setting {name!r} (known: {', '.join(FIELDS)})."
                )
            elif not FIELDS[name][0](value):
                problems.append(f"AOL_ACTION_TYPES[{action_type!r}][{name!r}]={value!r} must be {FIELDS[name][1]}.")
    return problems


def action_type_settings(action_type: str) -> ActionTypeSettings:
    """The settings of ``action_type``: its AOL_ACTION_TYPES entry over the global defaults.

    An invalid value (which the system check reports) is ignored here rather than crashing a daemon
    that was started without the checks.
    """
    values: dict[str, Any] = {"max_attempts": aol.max_attempts, "backoff_seconds": aol.retry_backoff_seconds}
    configured = aol.action_types
    entry = configured.get(action_type) if isinstance(configured, dict) else None
    if isinstance(entry, dict):
        values.update({name: value for name, value in entry.items() if name in FIELDS and FIELDS[name][0](value)})
    return ActionTypeSettings(action_type=action_type, **values)


# --- The approval gate's types -----------------------------------------------------------------------------


def approval_types_problems() -> list[str]:
    """What is wrong with AOL_APPROVAL_REQUIRED_TYPES (for the system check orchestration.E071)."""
    from orchestration.adapters import adapters_all

    registry = adapters_all()
    configured = aol.approval_required_types
    problems = []
    if configured is None:
        names = [name for name in DEFAULT_APPROVAL_REQUIRED_TYPES if name in registry]
    elif not isinstance(configured, list | tuple | set | frozenset):
        return [f"AOL_APPROVAL_REQUIRED_TYPES must be a list of action types, not {type(configured).__name__}."]
    else:
        names = list(configured)
        for name in names:
            if name not in registry:
                problems.append(
                    f"AOL_APPROVAL_REQUIRED_TYPES: unknown action type {name!r} (known: {', '.join(sorted(registry))})."
                )
    for name in names:
        adapter = registry.get(name)
        if adapter is not None and not adapter.supports_approval:
            problems.append(
                f"AOL_APPROVAL_REQUIRED_TYPES: {name} cannot be approved: its adapter cannot re-render its PROOF "
                "artifact (proof_render), so an approval could not be bound to what it sends."
            )
    return problems


def approval_required_types() -> frozenset[str]:
    """The action types whose REAL runs wait for a person's approval of their PROOF artifact."""
    configured = aol.approval_required_types
    if configured is None:
        return frozenset(DEFAULT_APPROVAL_REQUIRED_TYPES)
    if isinstance(configured, list | tuple | set | frozenset):
        return frozenset(name for name in configured if isinstance(name, str))
    return frozenset(DEFAULT_APPROVAL_REQUIRED_TYPES)  # invalid: E071 reports it; stay on the safe side
