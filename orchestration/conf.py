"""The AOL settings, each declared once (default, how its environment variable is parsed, meaning), read lazily.

``aicmo_site/settings.py`` turns every declared ``AOL_<NAME>`` environment variable into the Django
setting of the same name with the parser and default declared here. Application code reads
``aol.<name>``, which looks the Django setting up when used, never at import time, so
``override_settings`` works in tests and a management command sees the values of its own process.

Per-action-type settings (AOL_ACTION_TYPES) and the approval gate's types (AOL_APPROVAL_REQUIRED_TYPES)
are resolved here too, and validated by the system checks ``orchestration.E070`` and ``E071``, so a
daemon refuses to start on a mistake. See docs/flow-control.md.
"""

import random
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, overload
from urllib.parse import urlsplit

from django.conf import settings

T = TypeVar("T")

#: How settings.py parses an environment variable: ``bool``, ``int``, ``float``, ``str`` and ``json`` as
#: django-environ does; ``list`` comma-separated; ``names`` comma-separated with blanks stripped (set but
#: empty: an empty list); ``path`` a filesystem path.
Parse = Literal["bool", "int", "float", "str", "json", "list", "names", "path"]
#: A JSON object as a setting holds it.
JSONObject = dict[str, Any]

#: Action types gated by approval in REAL mode when AOL_APPROVAL_REQUIRED_TYPES is not set. Names
#: of types that do not exist (yet) are ignored here, and only here.
DEFAULT_APPROVAL_REQUIRED_TYPES = ("POST_SOCIAL", "SEND_EMAIL")


class Setting(Generic[T]):
    """One AOL setting: its default, how settings.py parses its variable, and what it means.

    As an attribute of ``AolSettings`` it reads ``settings.AOL_<NAME>`` each time it is used, and the
    default when that is not set. ``unset`` says what a default of None stands for, in the words of the
    README's configuration table. A malformed environment value arrives as its text (whatever ``T``
    says), so that ``orchestration.checks`` can name it and stop every command at start-up.
    """

    default: T
    parse: Parse
    meaning: str
    unset: str
    name: str

    def __init__(self, default: T, parse: Parse, meaning: str, *, unset: str = "") -> None:
        self.default = default
        self.parse = parse
        self.meaning = meaning
        self.unset = unset
        self.name = ""

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.name = f"AOL_{attribute.upper()}"

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> "Setting[T]": ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> "Setting[T] | T":
        if instance is None:
            return self
        return self.read()

    def read(self) -> T:
        return getattr(settings, self.name, self.default)


class ProjectPathSetting(Setting[Path]):
    """A path whose default is relative to the project directory (``settings.BASE_DIR``)."""

    def read(self) -> Path:
        configured = getattr(settings, self.name, None)
        return Path(configured) if configured else Path(settings.BASE_DIR) / self.default


class AolSettings:
    """``aol.max_attempts`` is ``settings.AOL_MAX_ATTEMPTS``, or its default. A new setting is one line here
    (and a row in the README's configuration table, which tests/test_conf.py holds to these defaults)."""

    proof_mode = Setting(False, "bool", "1 forces PROOF mode whatever the control flag says")
    max_ticks = Setting[int | None](None, "int", "the daemon exits after this many ticks", unset="unlimited")
    max_actions_per_tick = Setting(3, "int", "the most actions one tick runs")
    claim_batch_size = Setting(
        100, "int", "the most fast first attempts one claim takes together (1: one claim and one commit per action)"
    )
    max_tick_seconds = Setting(20.0, "float", "a tick's time budget: no new action starts after it")
    real_concurrency = Setting(
        1, "int", "REAL attempts the daemon runs at once (never two of one account; PROOF runs one at a time)"
    )
    max_attempts = Setting(3, "int", "attempts before an action goes to the DLQ")
    retry_backoff_seconds = Setting(5.0, "float", "retry delay = this × attempts made")
    heartbeat_seconds = Setting(5.0, "float", "lease renewal period")
    lease_ttl_seconds = Setting(30.0, "float", "how long a lease outlives its last renewal (at least 3 heartbeats)")
    tick_interval_seconds = Setting(5.0, "float", "sleep between ticks")
    control_poll_seconds = Setting(0.5, "float", "how often a running daemon re-reads the control flags")
    wake_on_enqueue = Setting(
        True, "bool", "PostgreSQL: an idle daemon wakes when actions are enqueued (LISTEN/NOTIFY), not at its next tick"
    )
    max_payload_bytes = Setting(64 * 1024, "int", "the largest payload accepted, as JSON")
    max_abandoned_threads = Setting(
        3, "int", "overrunning adapter threads (a thread cannot be killed) still alive before the daemon exits with 5"
    )
    extra_adapters = Setting[Sequence[str]]((), "list", "dotted paths of extra adapter classes to register")
    artifacts_dir = ProjectPathSetting(
        Path("var", "artifacts"), "path", "PROOF artifacts; keep it on persistent storage"
    )
    artifact_store = Setting(
        "files",
        "str",
        "where PROOF artifacts are written: files (AOL_ARTIFACTS_DIR) or database (aol_artifacts, with the SUCCESS)",
    )
    artifacts_min_free_bytes = Setting(
        100 * 1024 * 1024,
        "int",
        "the artifacts directory is unhealthy (S010, /readyz) below this much free space (0: no minimum)",
    )
    metrics_token = Setting("", "str", "bearer token for /metrics (empty: staff sessions only)")
    mcp_token = Setting(
        "", "str", "the API token `aol_mcp` serves with over stdio (over HTTP each request brings its own)"
    )
    api_writes_per_minute = Setting(
        600,
        "int",
        "write requests (proposals, batches, cancels, stops) one API token may make per minute; more get 429 "
        "(0: no limit)",
    )
    console_refresh_seconds = Setting(3.0, "float", "status view refresh period")
    log_level = Setting("INFO", "str", "level of the orchestration logger")

    # Retention (aol_prune: never an open action, nor the logs and artifacts of one) and storage warnings.
    retention_actions_days = Setting[float](30, "float", "days SUCCESS/FAILED actions are kept")
    retention_logs_days = Setting[float](30, "float", "days execution logs are kept")
    retention_ticks_days = Setting[float](7, "float", "days tick rows are kept")
    retention_artifacts_days = Setting[float](30, "float", "days PROOF artifact files are kept")
    prune_batch_size = Setting(1000, "int", "rows per delete transaction of aol_prune")
    warn_rows = Setting(1_000_000, "int", "the status view and check_sentinels warn when a table holds more rows")
    warn_artifacts_mb = Setting[float](
        1024, "float", "the status view and check_sentinels warn when the artifacts directory holds more MB"
    )

    # Flow control (docs/flow-control.md).
    action_types = Setting[dict[str, JSONObject]]({}, "json", "per-type settings (JSON object, see ActionTypeSettings)")
    approval_required_types = Setting[Collection[str] | None](
        None,
        "names",
        "types whose REAL runs wait for a person to approve their PROOF artifact (set but empty: none)",
        unset=",".join(DEFAULT_APPROVAL_REQUIRED_TYPES),
    )
    rate_limits = Setting[Sequence[JSONObject]](
        (), "json", "default rate limits (JSON list), for types without rows in the admin's rate-limit table"
    )

    # Connected accounts (docs/platforms.md).
    credentials_keys = Setting[Collection[str]](
        (),
        "names",
        "Fernet keys that encrypt connected accounts' credentials, comma-separated: the first encrypts, each decrypts",
    )
    # Adapters' endpoints (docs/platforms.md).
    webhooks = Setting[dict[str, JSONObject]](
        {},
        "json",
        'WEBHOOK endpoints (JSON object: name → {"url", "secret_env", "timeout_seconds"?, "connect_timeout_seconds"?})',
    )

    # Approval notifications (services/approval_notify.py; README "Approval notifications and editing").
    console_url = Setting(
        "", "str", "the console's address as people reach it (https://aol.example.com), for links in notifications"
    )
    approval_digest_threshold = Setting(
        3, "int", "more actions than this starting to wait for approval at once: one digest message lists them"
    )
    approval_webhook_url = Setting(
        "",
        "str",
        "also tell approvers through this URL (e.g. a chat incoming webhook), signed with AOL_APPROVAL_WEBHOOK_SECRET",
    )


aol = AolSettings()
#: Every declared setting, in declaration order.
DECLARED_SETTINGS: tuple[Setting[Any], ...] = tuple(
    value for value in vars(AolSettings).values() if isinstance(value, Setting)
)


# --- Per-action-type settings ------------------------------------------------------------------------------

BACKOFFS = ("fixed", "linear", "exponential")
#: What happens to an attempt whose outcome is unknown (its daemon died, or it overran):
#: auto: retry PROOF attempts and idempotent adapters, park REAL attempts of the others for review;
#: retry: always retry (the operator vouches the REAL effect is safe to repeat);
#: needs_review: park every REAL attempt for a person (PROOF attempts are still retried).
ORPHAN_POLICIES = ("auto", "retry", "needs_review")
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
    backoff_seconds: float
    backoff: str = "linear"
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


def action_type_settings_problems(*, registry: Mapping[str, Any]) -> list[str]:
    """What is wrong with AOL_ACTION_TYPES (for the system check orchestration.E070).

    ``registry`` is ``adapters_all()``: the adapters read their settings from here, so this module
    cannot import them.
    """
    configured: object = aol.action_types  # text when the environment's JSON is malformed
    if configured in (None, ""):
        return []
    if isinstance(configured, str):
        return [f"AOL_ACTION_TYPES={configured[:80]!r} is not a JSON object."]
    if not isinstance(configured, dict):
        return [
            f"AOL_ACTION_TYPES must be an object mapping action types to settings, not {type(configured).__name__}."
        ]
    known = registry
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


def approval_types_problems(*, registry: Mapping[str, Any]) -> list[str]:
    """What is wrong with AOL_APPROVAL_REQUIRED_TYPES (for the system check orchestration.E071); ``registry``
    is ``adapters_all()``."""
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


# --- WEBHOOK endpoints (AOL_WEBHOOKS) -----------------------------------------------------------------------

#: An endpoint's name as payloads use it, and an environment variable's name.
WEBHOOK_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
WEBHOOK_FIELDS = ("url", "secret_env", "timeout_seconds", "connect_timeout_seconds")
#: How long a WEBHOOK waits for an answer, and for the connection, unless its endpoint says otherwise.
WEBHOOK_TIMEOUT_SECONDS, WEBHOOK_CONNECT_TIMEOUT_SECONDS = 10.0, 5.0
MAX_WEBHOOK_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class WebhookEndpoint:
    """One configured WEBHOOK endpoint; its secret is read by ``webhook_secret``, never kept here."""

    name: str
    url: str
    secret_env: str
    timeout_seconds: float = WEBHOOK_TIMEOUT_SECONDS
    connect_timeout_seconds: float = WEBHOOK_CONNECT_TIMEOUT_SECONDS


def _timeout_ok(value: Any) -> bool:
    return _number(value) and 0 < value <= MAX_WEBHOOK_TIMEOUT_SECONDS


def webhook_endpoints_problems() -> list[str]:
    """What is wrong with AOL_WEBHOOKS (for the system check orchestration.E090); [] when nothing."""
    configured: object = aol.webhooks  # text when the environment's JSON is malformed
    if configured in (None, ""):
        return []
    if isinstance(configured, str):
        return [f"AOL_WEBHOOKS={configured[:80]!r} is not a JSON object."]
    if not isinstance(configured, dict):
        return [f"AOL_WEBHOOKS must be an object mapping endpoint names to settings, not {type(configured).__name__}."]
    problems = []
    for name, entry in configured.items():
        where = f"AOL_WEBHOOKS[{name!r}]"
        if not isinstance(name, str) or not WEBHOOK_NAME_RE.fullmatch(name):
            problems.append(f"{where}: a name is 1-64 lower-case letters, digits, '-' or '_', starting with one.")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{where} must be an object with url and secret_env, not {type(entry).__name__}.")
            continue
        unknown = sorted(set(entry) - set(WEBHOOK_FIELDS))
        if unknown:
            problems.append(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(WEBHOOK_FIELDS)}).")
        url = entry.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            problems.append(f"{where}: 'url' must be an absolute http or https URL without a #fragment, not {url!r}.")
        elif parts.username or parts.password:
            problems.append(f"{where}: 'url' must not hold a user or password; the secret goes in secret_env.")
        secret_env = entry.get("secret_env")
        if not isinstance(secret_env, str) or not ENV_NAME_RE.fullmatch(secret_env):
            problems.append(
                f"{where}: 'secret_env' must name the environment variable holding the signing secret "
                f"(upper-case letters, digits and '_'), not {secret_env!r}."
            )
        for field_name in ("timeout_seconds", "connect_timeout_seconds"):
            if field_name in entry and not _timeout_ok(entry[field_name]):
                problems.append(
                    f"{where}: {field_name!r} must be a number of seconds > 0 and at most "
                    f"{MAX_WEBHOOK_TIMEOUT_SECONDS:g}, not {entry[field_name]!r}."
                )
    return problems


def webhook_secret_envs(configured: object) -> list[str]:
    """The environment variables AOL_WEBHOOKS names as secrets (for settings.py, which reads them)."""
    if not isinstance(configured, dict):
        return []
    names = [entry.get("secret_env") for entry in configured.values() if isinstance(entry, dict)]
    return [name for name in names if isinstance(name, str) and ENV_NAME_RE.fullmatch(name)]


def webhook_endpoints() -> dict[str, WebhookEndpoint]:
    """The usable endpoints of AOL_WEBHOOKS, by name (a malformed entry is left out: E090 names it)."""
    configured: object = aol.webhooks
    if not isinstance(configured, dict) or webhook_endpoints_problems():
        return {}
    return {
        name: WebhookEndpoint(
            name=name,
            url=entry["url"],
            secret_env=entry["secret_env"],
            timeout_seconds=float(entry.get("timeout_seconds", WEBHOOK_TIMEOUT_SECONDS)),
            connect_timeout_seconds=float(entry.get("connect_timeout_seconds", WEBHOOK_CONNECT_TIMEOUT_SECONDS)),
        )
        for name, entry in configured.items()
    }


def webhook_secret(endpoint: WebhookEndpoint) -> str:
    """The endpoint's signing secret, as settings.py read it from the environment ('' when unset)."""
    secrets: Mapping[str, str] = getattr(settings, "WEBHOOK_SECRETS", {}) or {}
    return secrets.get(endpoint.secret_env, "")
