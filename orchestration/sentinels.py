"""The deployment sentinels: checks that say whether this release may go live, each with advice.

Used by ``manage.py check_sentinels`` and the diagnostics page, so the two never disagree. Each
sentinel has a stable id, returns pass / warn / fail / skip with one line of detail and, unless it
passed, one line of advice. Heavy modules are imported inside the sentinels that need them, and
every database access goes through a short-timeout probe first, so a run never hangs.
"""

import importlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from orchestration.dburl import mask_urls_in_text

if TYPE_CHECKING:
    from orchestration.services.health import DatabaseProbe

logger = logging.getLogger("orchestration")

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
MIGRATE_ADVICE = "Run: python manage.py migrate"
MIN_PYTHON = (3, 11)

#: The public API other code (and the seeds' runbook) relies on: module → names it must export.
PUBLIC_API = {
    "orchestration.services.enqueue": ["action_enqueue"],
    "orchestration.services.claim": ["action_claim_due"],
    "orchestration.services.results": ["action_mark_success", "action_mark_failure", "action_recover_orphans"],
    "orchestration.services.lease": ["lease_acquire_or_renew", "lease_renew", "lease_release", "lease_get"],
    "orchestration.services.control": [
        "control_flags_get",
        "control_pause",
        "control_resume",
        "control_kill",
        "control_revive",
        "control_set_proof_mode",
    ],
    "orchestration.services.status": ["status_snapshot"],
    "orchestration.daemon": ["Daemon", "DaemonConfig"],
    "orchestration.adapters": ["adapters_all", "adapter_get"],
    "llm.runtime": ["llm_enabled", "require_llm", "safe_llm_status"],
    "llm.client": ["llm_client_get"],
}
#: System-check ids another sentinel already reports (DATABASE_URL, artifacts directory).
COVERED_CHECK_IDS = {
    "orchestration.E010",
    "orchestration.E011",
    "orchestration.W010",
    "orchestration.E020",
    "orchestration.E021",
    "orchestration.W021",
}


@dataclass
class SentinelResult:
    id: str
    name: str
    status: str
    detail: str
    advice: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SentinelRun:
    """What the sentinels share within one run: options and the (single) database probe."""

    require_daemon: bool = False
    timeout_seconds: float = 2.0
    _probe: "DatabaseProbe | None" = field(default=None, repr=False)

    @property
    def probe(self) -> "DatabaseProbe":
        if self._probe is None:
            from orchestration.services.health import database_probe

            self._probe = database_probe(timeout_seconds=self.timeout_seconds)
        return self._probe


Sentinel = Callable[[SentinelRun], tuple[str, str, str]]
SENTINELS: list[tuple[str, str, Sentinel]] = []


def sentinel(id: str, name: str) -> Callable[[Sentinel], Sentinel]:
    """Register a sentinel returning ``(status, detail, advice)``."""

    def register(func: Sentinel) -> Sentinel:
        SENTINELS.append((id, name, func))
        return func

    return register


def sentinels_run(*, require_daemon: bool = False, timeout_seconds: float = 2.0) -> list[SentinelResult]:
    """Run every sentinel in order; an unexpected error is that sentinel's failure, never a traceback."""
    run = SentinelRun(require_daemon=require_daemon, timeout_seconds=timeout_seconds)
    results = []
    for id, name, func in SENTINELS:
        started = time.monotonic()
        try:
            status, detail, advice = func(run)
        except Exception as exc:  # a sentinel that breaks reports it; the others still run
            logger.debug("sentinel id=%s raised", id, exc_info=True)
            status, detail, advice = FAIL, f"{type(exc).__name__}: {_one_line(exc)}", "See the server log."
        results.append(SentinelResult(id, name, status, detail, advice, round(time.monotonic() - started, 4)))
    return results


def sentinels_summary(results: list[SentinelResult]) -> dict[str, int]:
    counts = {PASS: 0, WARN: 0, FAIL: 0, SKIP: 0}
    for result in results:
        counts[result.status] += 1
    return counts


def _one_line(exc: BaseException) -> str:
    from orchestration.dburl import redact

    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    try:
        line = redact(line)
    except Exception:  # redact reads the connection settings, which may be what is broken
        line = mask_urls_in_text(line)
    return line[:300]


def _database_skipped(run: SentinelRun) -> tuple[str, str, str] | None:
    if not run.probe.reachable:
        return SKIP, "database unreachable (see the connectivity check)", "Fix the database connection first."
    return None


# --- The sentinels, in the order they run ----------------------------------------------------------


@sentinel("orchestration.S001", "Python runtime")
def check_python(run: SentinelRun) -> tuple[str, str, str]:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return FAIL, f"Python {version}", f"Use Python {'.'.join(map(str, MIN_PYTHON))} or newer."
    return PASS, f"Python {version} ({sys.executable})", ""


@sentinel("orchestration.S002", "Django and project apps")
def check_django_apps(run: SentinelRun) -> tuple[str, str, str]:
    import django
    from django.apps import apps

    apps.check_apps_ready()
    labels = []
    for label in ("orchestration", "llm"):
        config = apps.get_app_config(label)
        labels.append(config.label)
    importlib.import_module("orchestration.models")
    return PASS, f"Django {django.get_version()}; apps {', '.join(labels)} loaded", ""


@sentinel("orchestration.S003", "Public service API")
def check_service_api(run: SentinelRun) -> tuple[str, str, str]:
    missing = []
    for module_name, names in PUBLIC_API.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing.append(f"{module_name} ({exc})")
            continue
        missing.extend(f"{module_name}.{name}" for name in names if not hasattr(module, name))
    if missing:
        return FAIL, f"missing: {', '.join(missing)}", "Reinstall the release: its code is incomplete."
    return PASS, f"{sum(map(len, PUBLIC_API.values()))} names in {len(PUBLIC_API)} modules import", ""


@sentinel("orchestration.S004", "DATABASE_URL")
def check_database_url(run: SentinelRun) -> tuple[str, str, str]:
    from django.conf import settings

    from orchestration.dburl import validate_database_url

    result = validate_database_url()
    issues = list(getattr(settings, "DATABASE_URL_ISSUES", None) or result["issues"])
    masked = result["masked"] or "(empty)"
    if issues:
        return (
            FAIL,
            f"{masked}: {' '.join(issues)}",
            "Set DATABASE_URL to e.g. postgresql://user:password@host:5432/name (synchronous driver).",
        )
    if result["warnings"]:
        return WARN, f"{masked}: {' '.join(result['warnings'])}", "Use an absolute file path or a server database."
    return PASS, f"{masked} ({result['backend']})", ""


@sentinel("orchestration.S005", "Database connectivity")
def check_database_connectivity(run: SentinelRun) -> tuple[str, str, str]:
    from orchestration.dburl import database_url_masked

    probe = run.probe
    url = database_url_masked()
    if not probe.reachable:
        advice = "Check DATABASE_URL and that the database server is running and reachable."
        if probe.error.startswith("the SQLite file"):
            advice = f"{MIGRATE_ADVICE} (creates the file), or fix the path in DATABASE_URL."
        return FAIL, f"cannot connect to {url}: {probe.error}", advice
    return PASS, f"{probe.vendor} at {url} answered in {probe.seconds * 1000:.0f} ms", ""


@sentinel("orchestration.S006", "AOL tables")
def check_aol_tables(run: SentinelRun) -> tuple[str, str, str]:
    from orchestration.services.health import aol_table_names

    skipped = _database_skipped(run)
    if skipped:
        return skipped
    missing = run.probe.missing_aol_tables
    if missing:
        return FAIL, f"missing: {', '.join(missing)}", MIGRATE_ADVICE
    return PASS, f"all {len(aol_table_names())} present: {', '.join(aol_table_names())}", ""


@sentinel("orchestration.S007", "Migrations")
def check_migrations(run: SentinelRun) -> tuple[str, str, str]:
    skipped = _database_skipped(run)
    if skipped:
        return skipped
    unapplied = run.probe.unapplied
    if unapplied:
        shown = ", ".join(unapplied[:5]) + (" …" if len(unapplied) > 5 else "")
        return FAIL, f"{len(unapplied)} not applied: {shown}", MIGRATE_ADVICE
    return PASS, "all applied", ""


@sentinel("orchestration.S008", "LLM")
def check_llm(run: SentinelRun) -> tuple[str, str, str]:
    from llm.runtime import safe_llm_status

    status = safe_llm_status()
    where = f", base URL {status['base_url']}" if status["base_url"] else ""
    if status["enabled"]:
        return PASS, f"enabled, model {status['model']}{where}", ""
    advice = "Optional. To enable: set OPENAI_API_KEY (and AICMO_USE_LLM=1) for the web and daemon processes."
    # Disabled is a supported setup, so it warns (and fails --fail-on-warn) only when work waits for it.
    waiting = _waiting_llm_actions(run)
    if waiting:
        return (
            WARN,
            f"{status['reason']}; {waiting} queued DRAFT_SOCIAL action(s) will fail until it is enabled",
            advice,
        )
    return SKIP, f"{status['reason']}; optional, and no queued action needs it", advice


def _waiting_llm_actions(run: SentinelRun) -> int:
    """Queued actions that need the LLM (0 when the database cannot tell)."""
    if not run.probe.ready:
        return 0
    from orchestration.models import DUE_STATUSES, Action

    return Action.objects.filter(action_type="DRAFT_SOCIAL", status__in=DUE_STATUSES).count()


@sentinel("orchestration.S009", "Status view")
def check_status_view(run: SentinelRun) -> tuple[str, str, str]:
    from django.urls import NoReverseMatch, reverse

    try:
        url = reverse("orchestration:status")
    except NoReverseMatch:
        return (
            WARN,
            "no URL named orchestration:status is installed",
            "Install the release's status view (orchestration/urls.py, included from aicmo_site/urls.py).",
        )
    if not run.probe.ready:
        return SKIP, f"{url}: not rendered, the database is not ready ({run.probe.reason})", "Fix the database first."
    status = _render_as_staff(url)
    if status != 200:
        return FAIL, f"GET {url} as a staff user answered HTTP {status}", "See the server log for the error."
    return PASS, f"GET {url} renders for a staff user (HTTP 200)", ""


def _render_as_staff(url: str) -> int:
    """Resolve and call the view with an unsaved staff user (nothing is written)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.contrib.sessions.backends.signed_cookies import SessionStore
    from django.test import RequestFactory
    from django.urls import resolve

    hosts = [host for host in settings.ALLOWED_HOSTS if host and not host.startswith((".", "*"))]
    request = RequestFactory().get(url, HTTP_HOST=hosts[0] if hosts else "localhost")
    request.user = get_user_model()(username="sentinel", is_staff=True, is_superuser=True, is_active=True)
    request.session = SessionStore()
    # What the messages and CSRF middleware would set; the stubs do not declare these private attributes.
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
    match = resolve(url)
    response = match.func(request, *match.args, **match.kwargs)
    if hasattr(response, "render") and callable(response.render) and not getattr(response, "is_rendered", True):
        response.render()
    return response.status_code


@sentinel("orchestration.S010", "Artifacts directory")
def check_artifacts_dir(run: SentinelRun) -> tuple[str, str, str]:
    from orchestration.adapters.store import artifact_store_probe_detail

    probe = artifact_store_probe_detail()
    if probe.store == "database" and probe.ok:
        return PASS, f"{probe.summary}; no directory to probe (S005 checks the database)", ""
    if probe.kind == "low_space":
        return (
            FAIL,
            probe.problem,
            "Free space on that filesystem (python manage.py aol_prune deletes old artifacts), give it more, "
            "or lower AOL_ARTIFACTS_MIN_FREE_BYTES.",
        )
    if probe.kind == "misconfigured":
        return (
            FAIL,
            probe.problem,
            "Fix AOL_ARTIFACT_STORE (files or database) or AOL_ARTIFACTS_MIN_FREE_BYTES (bytes, 0 or more).",
        )
    if probe.problem:
        return (
            FAIL,
            probe.problem,
            "Set AOL_ARTIFACTS_DIR to a directory the web and daemon processes can write, on a filesystem "
            "with free space.",
        )
    return PASS, f"{probe.path} is writable; {probe.space}", ""


@sentinel("orchestration.S011", "Django system checks")
def check_system_checks(run: SentinelRun) -> tuple[str, str, str]:
    from django.core import checks

    databases = ["default"] if run.probe.ready else None
    messages = [m for m in checks.run_checks(databases=databases) if m.id not in COVERED_CHECK_IDS]
    messages = [m for m in messages if not m.is_silenced()]
    errors = [m for m in messages if m.level >= checks.ERROR]
    warnings = [m for m in messages if checks.WARNING <= m.level < checks.ERROR]
    if errors or warnings:
        first = (errors or warnings)[0]
        detail = "; ".join(f"{m.id}: {m.msg}" for m in errors + warnings)
        return FAIL if errors else WARN, detail, first.hint or "Run python manage.py check for details."
    scope = "including database checks" if databases else "without database checks"
    return PASS, f"no issues ({scope})", ""


@sentinel("orchestration.S012", "Daemon heartbeat")
def check_daemon(run: SentinelRun) -> tuple[str, str, str]:
    from orchestration.conf import aol
    from orchestration.services.lease import lease_health

    advice = "Start the daemon: python manage.py run_aol_daemon (or check why it stopped in its log)."
    if not run.probe.ready:
        status = FAIL if run.require_daemon else SKIP
        return status, f"cannot read the lease: {run.probe.reason}", "Fix the database first."
    try:
        lease = lease_health()
    except (DatabaseError, ImproperlyConfigured) as exc:
        return FAIL if run.require_daemon else SKIP, f"cannot read the lease: {_one_line(exc)}", advice
    if lease.held:
        age = "" if lease.heartbeat_age_seconds is None else f"heartbeat {lease.heartbeat_age_seconds:.1f}s ago, "
        state = f"held by {lease.holder}, {age}expires in {lease.expires_in_seconds:.1f}s"
        if lease.state == "green":
            return PASS, state, ""
        state += f": heartbeats are late (more than two {aol.heartbeat_seconds:g}s heartbeats missed)"
    else:
        state = "no daemon holds the lease"
    if not run.require_daemon:
        return SKIP, f"{state} (not required; pass --require-daemon)", ""
    return FAIL, state, advice


@sentinel("orchestration.S013", "Storage size")
def check_storage_size(run: SentinelRun) -> tuple[str, str, str]:
    """Table row estimates and the artifacts directory against AOL_WARN_ROWS / AOL_WARN_ARTIFACTS_MB."""
    if not run.probe.ready:
        return SKIP, f"not measured: the database is not ready ({run.probe.reason})", "Fix the database first."
    from orchestration.services.retention import storage_sizes

    sizes = storage_sizes(max_age_seconds=0)
    artifacts = sizes["artifacts"]
    tables = ", ".join(f"{t['table']} {'~' if t['estimated'] else ''}{t['rows']:,} rows" for t in sizes["tables"])
    more = "+" if artifacts["truncated"] else ""
    in_database = artifacts["database"]
    rows = f"{'~' if in_database['estimated'] else ''}{in_database['rows']:,}"
    detail = (
        f"{tables}; artifacts {artifacts['files']:,}{more} files and {rows} in the database, {artifacts['mb']:,.1f} MB"
    )
    if not sizes["warn"]:
        return PASS, detail, ""
    over = [f"{t['table']} above {sizes['warn_rows']:,} rows (AOL_WARN_ROWS)" for t in sizes["tables"] if t["warn"]]
    if artifacts["warn"]:
        over.append(f"artifacts above {sizes['warn_artifacts_mb']:,g} MB (AOL_WARN_ARTIFACTS_MB)")
    return (
        WARN,
        f"{'; '.join(over)}: {detail}",
        "Prune old records: python manage.py aol_prune --dry-run, then without --dry-run (schedule it daily); "
        "or lower AOL_RETENTION_*_DAYS.",
    )
