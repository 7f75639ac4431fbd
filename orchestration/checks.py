"""Django system checks for the AOL settings: ``manage.py check`` reports them, and every command
that runs checks (runserver, migrate, run_aol_daemon) refuses to start on an error."""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from orchestration.adapters import adapters_all
from orchestration.conf import aol

#: Settings that must be greater than zero, and whether they are whole numbers.
POSITIVE_SETTINGS = {
    "max_actions_per_tick": int,
    "max_tick_seconds": float,
    "max_attempts": int,
    "heartbeat_seconds": float,
    "lease_ttl_seconds": float,
    "tick_interval_seconds": float,
    "control_poll_seconds": float,
    "max_payload_bytes": int,
    "max_abandoned_threads": int,
}
#: The lease must outlive this many missed heartbeats before another daemon may take it over.
TTL_HEARTBEATS = 3


@checks.register()
def check_aol_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    errors = []
    for name, kind in POSITIVE_SETTINGS.items():
        value = getattr(aol, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            errors.append(
                checks.Error(
                    f"AOL_{name.upper()}={value!r} must be a number greater than zero.",
                    hint=f"Set AOL_{name.upper()} to a positive {'whole number' if kind is int else 'number'}, "
                    "or unset it to use the default.",
                    id="orchestration.E001",
                )
            )
    max_ticks = aol.max_ticks
    if max_ticks is not None and (not isinstance(max_ticks, int) or max_ticks <= 0):
        errors.append(
            checks.Error(
                f"AOL_MAX_TICKS={max_ticks!r} must be a whole number greater than zero.",
                hint="Unset AOL_MAX_TICKS to run until stopped.",
                id="orchestration.E001",
            )
        )
    ttl, heartbeat = aol.lease_ttl_seconds, aol.heartbeat_seconds
    if not errors and ttl < TTL_HEARTBEATS * heartbeat:
        errors.append(
            checks.Error(
                f"AOL_LEASE_TTL_SECONDS={ttl:g} is too close to AOL_HEARTBEAT_SECONDS={heartbeat:g}: a daemon "
                f"could lose its lease between two heartbeats.",
                hint=f"Keep the TTL at least {TTL_HEARTBEATS}× the heartbeat (the defaults are 30 and 5).",
                id="orchestration.E002",
            )
        )
    try:
        adapters_all()
    except ImproperlyConfigured as exc:
        errors.append(
            checks.Error(
                str(exc),
                hint="Fix or remove the entry in AOL_EXTRA_ADAPTERS (comma-separated dotted class paths).",
                id="orchestration.E003",
            )
        )
    return errors
