"""Django system checks for the AOL settings: ``manage.py check`` reports them, and every command
that runs checks (runserver, migrate, run_aol_daemon) refuses to start on an error."""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from orchestration.adapters import adapters_all
from orchestration.conf import (
    action_type_settings_problems,
    aol,
    approval_types_problems,
    webhook_endpoints,
    webhook_endpoints_problems,
    webhook_secret,
)

#: Settings that must be greater than zero, and whether they are whole numbers.
POSITIVE_SETTINGS = {
    "max_actions_per_tick": int,
    "claim_batch_size": int,
    "max_tick_seconds": float,
    "max_attempts": int,
    "heartbeat_seconds": float,
    "lease_ttl_seconds": float,
    "tick_interval_seconds": float,
    "control_poll_seconds": float,
    "max_payload_bytes": int,
    "console_refresh_seconds": float,
    "max_abandoned_threads": int,
    "real_concurrency": int,
}
#: The most REAL attempts at once: each is a thread (and, if its adapter reads the database, a connection).
MAX_REAL_CONCURRENCY = 64
#: The lease must outlive this many missed heartbeats before another daemon may take it over.
TTL_HEARTBEATS = 3


@checks.register()
def check_aol_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
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
    concurrency = aol.real_concurrency
    if isinstance(concurrency, float) and concurrency > 0:
        errors.append(
            checks.Error(
                f"AOL_REAL_CONCURRENCY={concurrency!r} must be a whole number of attempts.",
                hint=f"Set AOL_REAL_CONCURRENCY to a whole number from 1 to {MAX_REAL_CONCURRENCY}.",
                id="orchestration.E004",
            )
        )
    elif isinstance(concurrency, int) and concurrency > MAX_REAL_CONCURRENCY:
        errors.append(
            checks.Error(
                f"AOL_REAL_CONCURRENCY={concurrency} is more than {MAX_REAL_CONCURRENCY} REAL attempts at once.",
                hint="Each attempt in flight is a thread and may hold a database connection; platforms rate-limit "
                f"well before that. Set it between 1 and {MAX_REAL_CONCURRENCY}.",
                id="orchestration.E004",
            )
        )
    per_tick = aol.max_actions_per_tick
    if not errors and concurrency > per_tick:
        errors.append(
            checks.Warning(
                f"AOL_REAL_CONCURRENCY={concurrency} is more than AOL_MAX_ACTIONS_PER_TICK={per_tick}: a tick claims "
                f"at most {per_tick} action(s), so no more than {per_tick} REAL attempts are ever in flight.",
                hint="Raise AOL_MAX_ACTIONS_PER_TICK to at least AOL_REAL_CONCURRENCY (a few times it keeps the "
                "slots busy), or lower AOL_REAL_CONCURRENCY.",
                id="orchestration.W004",
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


@checks.register()
def check_database_url(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """DATABASE_URL problems found while settings loaded (the URL itself is never shown unmasked)."""
    from django.conf import settings

    from orchestration.dburl import ASYNC_DRIVERS, validate_database_url

    result = validate_database_url()
    messages: list[checks.CheckMessage] = []
    masked = result["masked"] or "(empty)"
    issues = getattr(settings, "DATABASE_URL_ISSUES", None) or []
    if issues:
        is_async = result["driver"] in ASYNC_DRIVERS
        messages.append(
            checks.Error(
                f"DATABASE_URL={masked} cannot be used: {' '.join(issues)}",
                hint=(
                    f"Use the synchronous form: {result['scheme']}://… without +{result['driver']}."
                    if is_async
                    else "Set DATABASE_URL to e.g. postgresql://user:password@host:5432/name, then run "
                    "python manage.py check_sentinels."
                ),
                id="orchestration.E010" if is_async else "orchestration.E011",
            )
        )
    if not messages:
        for warning in result["warnings"]:
            messages.append(
                checks.Warning(
                    f"DATABASE_URL={masked}: {warning}",
                    hint="Fix DATABASE_URL, or ignore this if it is meant.",
                    id="orchestration.W010",
                )
            )
    return messages


@checks.register()
def check_artifacts_dir(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """PROOF artifacts need a store: AOL_ARTIFACT_STORE names one (E023), and the files store a writable
    directory (created on first use if its parent allows); the database store needs nothing more."""
    from orchestration.adapters.artifacts import artifacts_dir_problem, artifacts_min_free_bytes_problem
    from orchestration.adapters.store import DATABASE, artifact_store_problem

    messages: list[checks.CheckMessage] = []
    store_problem = artifact_store_problem()
    if store_problem:
        messages.append(
            checks.Error(
                store_problem,
                hint="Set AOL_ARTIFACT_STORE=files (AOL_ARTIFACTS_DIR, the default) or database (aol_artifacts).",
                id="orchestration.E023",
            )
        )
    elif aol.artifact_store == DATABASE:
        return messages
    misconfigured = artifacts_min_free_bytes_problem()
    if misconfigured:
        messages.append(
            checks.Error(
                misconfigured,
                hint="Set AOL_ARTIFACTS_MIN_FREE_BYTES to a number of bytes (0: no minimum), or unset it for the "
                "default (104857600, 100 MiB).",
                id="orchestration.E022",
            )
        )
    problem = artifacts_dir_problem()
    if problem is None:
        return messages
    kind, message = problem
    hint = "Set AOL_ARTIFACTS_DIR to a directory the AOL processes can write, or create it and fix its permissions."
    if kind == "not_writable":
        # A warning, not an error: permissions can come back (a remount, a full disk freed), and
        # until then the daemon pauses claiming without counting attempts, so it may start.
        return [*messages, checks.Warning(message, hint=hint, id="orchestration.W021")]
    check_id = "orchestration.E020" if kind == "missing" else "orchestration.E021"
    return [*messages, checks.Error(message, hint=hint, id=check_id)]


@checks.register(checks.Tags.database)
def check_real_mode_with_debug(
    app_configs: Sequence[AppConfig] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """REAL mode acts on the world; DEBUG leaks settings in error pages and keeps every query in memory.

    Tagged ``database`` because the PROOF/REAL switch is a database flag: ``check --database default``,
    ``migrate`` and ``check_sentinels`` run it.
    """
    from django.conf import settings
    from django.db import DatabaseError

    if not settings.DEBUG or aol.proof_mode or not databases or "default" not in databases:
        return []
    from orchestration.models import ControlFlags

    try:
        proof = ControlFlags.objects.filter(pk=ControlFlags.SINGLETON_ID).values_list("proof_mode", flat=True).first()
    except DatabaseError:
        return []  # no database or no table yet: nothing can run in REAL mode
    if proof is None or proof:
        return []
    return [
        checks.Error(
            "The daemon is in REAL mode while DEBUG is on.",
            hint="Set DEBUG=0 in production, or switch PROOF mode back on: "
            "python manage.py aol_control proof on --reason '…'.",
            id="orchestration.E030",
        )
    ]


@checks.register()
def check_llm_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The LLM's time bounds must be numbers that bound something (the key itself is optional)."""
    from django.conf import settings

    errors: list[checks.CheckMessage] = []
    timeout = getattr(settings, "AICMO_LLM_TIMEOUT_SECONDS", 20.0)
    retries = getattr(settings, "AICMO_LLM_MAX_RETRIES", 1)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < float("inf"):
        errors.append(
            checks.Error(
                f"AICMO_LLM_TIMEOUT_SECONDS={timeout!r} must be a number greater than zero.",
                hint="Unset it to use the default (20).",
                id="orchestration.E040",
            )
        )
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        errors.append(
            checks.Error(
                f"AICMO_LLM_MAX_RETRIES={retries!r} must be a whole number from 0 to 10.",
                hint="Unset it to use the default (1).",
                id="orchestration.E040",
            )
        )
    return errors


@checks.register()
def check_email_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The SMTP settings SEND_EMAIL uses in REAL mode must parse and agree (the password is never shown)."""
    from django.conf import settings

    errors: list[checks.CheckMessage] = []
    port = getattr(settings, "EMAIL_PORT", 25)
    timeout = getattr(settings, "EMAIL_TIMEOUT", None)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        errors.append(
            checks.Error(
                f"EMAIL_PORT={port!r} must be a port number (1-65535).",
                hint="Usually 587 with EMAIL_USE_TLS=1, 465 with EMAIL_USE_SSL=1, or 25.",
                id="orchestration.E050",
            )
        )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < float("inf")
    ):
        errors.append(
            checks.Error(
                f"EMAIL_TIMEOUT={timeout!r} must be a number of seconds greater than zero.",
                hint="Unset it to use the default (10).",
                id="orchestration.E050",
            )
        )
    for name in ("EMAIL_USE_TLS", "EMAIL_USE_SSL"):
        if not isinstance(getattr(settings, name, False), bool):
            errors.append(
                checks.Error(
                    f"{name}={getattr(settings, name)!r} must be a boolean (1/0, true/false).",
                    hint=f"Set {name}=1 or {name}=0.",
                    id="orchestration.E050",
                )
            )
    if getattr(settings, "EMAIL_USE_TLS", False) is True and getattr(settings, "EMAIL_USE_SSL", False) is True:
        errors.append(
            checks.Error(
                "EMAIL_USE_TLS and EMAIL_USE_SSL are both on; they are mutually exclusive.",
                hint="Use EMAIL_USE_TLS=1 (STARTTLS, usually port 587) or EMAIL_USE_SSL=1 (usually port 465).",
                id="orchestration.E050",
            )
        )
    return errors


#: Retention and storage-warning settings: each must be a number greater than zero.
RETENTION_SETTINGS = {
    "retention_actions_days": float,
    "retention_logs_days": float,
    "retention_ticks_days": float,
    "retention_artifacts_days": float,
    "prune_batch_size": int,
    "warn_rows": int,
    "warn_artifacts_mb": float,
}


@checks.register()
def check_retention_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for name, kind in RETENTION_SETTINGS.items():
        value = getattr(aol, name)
        bad_kind = not isinstance(value, int) if kind is int else not isinstance(value, int | float)
        if isinstance(value, bool) or bad_kind or not 0 < value < float("inf"):
            errors.append(
                checks.Error(
                    f"AOL_{name.upper()}={value!r} must be a {'whole ' if kind is int else ''}number "
                    "greater than zero.",
                    hint=f"Set AOL_{name.upper()} to a positive {'whole number' if kind is int else 'number'}, "
                    "or unset it to use the default (see docs/flow-control.md).",
                    id="orchestration.E060",
                )
            )
    return errors


@checks.register()
def check_flow_control_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """AOL_ACTION_TYPES (E070), AOL_APPROVAL_REQUIRED_TYPES (E071) and AOL_RATE_LIMITS (E072)."""
    from orchestration.services.rate_limits import default_rate_limits_problems

    try:
        registry = adapters_all()
    except ImproperlyConfigured:
        return []  # E003 already says why; the type names cannot be checked without the registry
    found = [
        (
            action_type_settings_problems(registry=registry),
            "Fix AOL_ACTION_TYPES (a JSON object: action type → {max_attempts, backoff, backoff_seconds, "
            "backoff_max_seconds, jitter, timeout_seconds, orphan_policy}); see docs/flow-control.md.",
            "orchestration.E070",
        ),
        (
            approval_types_problems(registry=registry),
            "List known action types whose adapters can re-render their PROOF artifact in "
            "AOL_APPROVAL_REQUIRED_TYPES (comma-separated), or unset it for the default (POST_SOCIAL, SEND_EMAIL).",
            "orchestration.E071",
        ),
        (
            default_rate_limits_problems(),
            'Fix AOL_RATE_LIMITS (a JSON list of {"action_type", "key_fields", "max_count", "period_seconds"}); '
            "see docs/flow-control.md.",
            "orchestration.E072",
        ),
    ]
    return [checks.Error(problem, hint=hint, id=check_id) for problems, hint, check_id in found for problem in problems]


@checks.register()
def check_api_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """AOL_API_WRITES_PER_MINUTE: a whole number, 0 meaning no limit (E080)."""
    value = aol.api_writes_per_minute
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return [
            checks.Error(
                f"AOL_API_WRITES_PER_MINUTE={value!r} must be a whole number of requests, 0 or more.",
                hint="Set AOL_API_WRITES_PER_MINUTE to the write requests one API token may make per minute "
                "(0: no limit), or unset it for the default (600).",
                id="orchestration.E080",
            )
        ]
    return []


@checks.register()
def check_webhook_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """AOL_WEBHOOKS must be well formed (E090); a secret variable it names should be set (W091)."""
    problems = webhook_endpoints_problems()
    if problems:
        return [
            checks.Error(
                problem,
                hint='Fix AOL_WEBHOOKS: a JSON object, endpoint name → {"url": "https://…", "secret_env": '
                '"VARIABLE", "timeout_seconds": 10, "connect_timeout_seconds": 5}; see docs/platforms.md.',
                id="orchestration.E090",
            )
            for problem in problems
        ]
    return [
        checks.Warning(
            f"AOL_WEBHOOKS[{endpoint.name!r}] names {endpoint.secret_env} as its signing secret, but that variable "
            "is not set: WEBHOOK actions to it cannot run in REAL mode.",
            hint=f"Set {endpoint.secret_env} in the daemon's environment (a long random string the receiver "
            "also knows), or keep PROOF mode on.",
            id="orchestration.W091",
        )
        for endpoint in webhook_endpoints().values()
        if not webhook_secret(endpoint)
    ]


@checks.register()
def check_credentials_keys(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """AOL_CREDENTIALS_KEYS: each a Fernet key (E095); the message names a key by its position, never its value."""
    from orchestration.credentials import KEYS_HINT, credentials_keys_problems

    return [
        checks.Error(problem, hint=KEYS_HINT[0].upper() + KEYS_HINT[1:] + ".", id="orchestration.E095")
        for problem in credentials_keys_problems()
    ]


@checks.register()
def check_approval_notifications(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """AOL_APPROVAL_WEBHOOK_URL: an http(s) URL, and its signing secret set (W096); the threshold at least 1 (E097)."""
    from urllib.parse import urlsplit

    from django.conf import settings

    found: list[checks.CheckMessage] = []
    threshold = aol.approval_digest_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        found.append(
            checks.Error(
                f"AOL_APPROVAL_DIGEST_THRESHOLD={threshold!r} must be a whole number, 1 or more.",
                hint="Set it to how many actions may start waiting at once before one digest lists them "
                "(or unset it: 3).",
                id="orchestration.E097",
            )
        )
    url = aol.approval_webhook_url
    if not url:
        return found
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "is not an http(s) URL"
    elif not getattr(settings, "APPROVAL_WEBHOOK_SECRET", ""):
        problem = "is set, but AOL_APPROVAL_WEBHOOK_SECRET is not"
    else:
        return found
    found.append(
        checks.Warning(
            f"AOL_APPROVAL_WEBHOOK_URL {problem}: approvers are not told through it.",
            hint="Set AOL_APPROVAL_WEBHOOK_URL to the receiver's https:// URL and AOL_APPROVAL_WEBHOOK_SECRET to a "
            "long random string the receiver checks AOL-Signature with (docs: README, approval notifications), "
            "or unset the URL.",
            id="orchestration.W096",
        )
    )
    return found
