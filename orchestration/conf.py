"""Lazy access to the AOL settings.

Settings are read when used, never at import time, so ``override_settings`` works in tests and a
management command sees the values of the process it runs in.
"""

from pathlib import Path

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
    "AOL_ARTIFACTS_MIN_FREE_BYTES": 100 * 1024 * 1024,
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
