"""Database health as the sentinels, /readyz and the diagnostics page see it.

Every probe uses a private connection with a short connect and statement timeout, so a dead or
blackholed server costs seconds, not the default connection's minutes, and the request's own
connection is untouched. Passwords never appear in what a probe returns.
"""

import copy
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend

from orchestration.dburl import mask_urls_in_text
from orchestration.services.sql import migrations_applied

#: Default connect timeout of a probe, in seconds (libpq rounds anything below 2 up to 2).
PROBE_TIMEOUT_SECONDS = 2.0
#: Tables Django's login and sessions need: without them nobody can be authenticated.
AUTH_TABLES = ("auth_user", "django_session", "django_content_type")


@dataclass(frozen=True)
class DatabaseProbe:
    reachable: bool
    error: str = ""
    vendor: str = ""
    seconds: float = 0.0
    tables: frozenset[str] = field(default_factory=frozenset)
    unapplied: tuple[str, ...] = ()

    @property
    def missing_aol_tables(self) -> list[str]:
        return [name for name in aol_table_names() if name not in self.tables] if self.reachable else []

    @property
    def auth_available(self) -> bool:
        """Sessions and users can be read: staff can be authenticated."""
        return self.reachable and all(name in self.tables for name in AUTH_TABLES)

    @property
    def ready(self) -> bool:
        return self.reachable and not self.unapplied and not self.missing_aol_tables

    @property
    def public_reason(self) -> str:
        """Why the database is not ready, for anonymous callers: no host names, no driver messages."""
        if not self.reachable:
            if self.error.startswith("DATABASE_URL cannot be used"):
                return "database not configured (DATABASE_URL cannot be used)"
            return "database unreachable"
        if self.unapplied:
            return f"{len(self.unapplied)} migration(s) not applied"
        if self.missing_aol_tables:
            return f"{len(self.missing_aol_tables)} AOL table(s) missing"
        return ""

    @property
    def reason(self) -> str:
        """One short, secret-free line: why the database is not ready ('' when it is)."""
        if not self.reachable:
            return f"database unreachable: {self.error}"
        if self.unapplied:
            return f"{len(self.unapplied)} migration(s) not applied"
        if self.missing_aol_tables:
            return f"missing tables: {', '.join(self.missing_aol_tables)}"
        return ""


def aol_table_names() -> list[str]:
    from django.apps import apps

    return sorted(model._meta.db_table for model in apps.get_app_config("orchestration").get_models())


@functools.cache
def expected_migrations() -> frozenset[tuple[str, str]]:
    """Every migration on disk for the installed apps (read once per process: the code does not change)."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    return frozenset(loader.graph.nodes)


def settings_dict_from_url(url: str) -> dict[str, Any]:
    """A complete DATABASES entry for ``url`` (to probe a database other than the configured one)."""
    import environ

    from orchestration.dburl import url_for_django

    return _complete(environ.Env.db_url_config(url_for_django(url)))


def _complete(db: dict[str, Any]) -> dict[str, Any]:
    return connections.configure_settings({"default": db})["default"]


def _private_connection(settings_dict: dict[str, Any], timeout_seconds: float) -> BaseDatabaseWrapper:
    db = _complete(copy.deepcopy(settings_dict))
    options = db.setdefault("OPTIONS", {})
    engine = db.get("ENGINE", "")
    if engine.endswith("postgresql"):
        options["connect_timeout"] = max(2, int(round(timeout_seconds)))
        # Bound every statement too: a probe must never wait on a lock or a stuck server.
        statement = f"-c statement_timeout={int(timeout_seconds * 1000)}"
        options["options"] = f"{options.get('options', '')} {statement}".strip()
    elif engine.endswith("sqlite3"):
        options["timeout"] = timeout_seconds
    db["CONN_MAX_AGE"] = 0
    db["CONN_HEALTH_CHECKS"] = False
    return load_backend(engine).DatabaseWrapper(db, "health-probe")


def _sqlite_missing(settings_dict: dict[str, Any]) -> str:
    name = str(settings_dict.get("NAME") or "")
    if settings_dict.get("ENGINE", "").endswith("sqlite3") and name and name != ":memory:":
        if not name.startswith("file:") and not Path(name).exists():
            # Connecting would create an empty file; report it missing instead.
            return f"the SQLite file {name} does not exist"
    return ""


def database_probe(
    *,
    alias: str = "default",
    settings_dict: dict[str, Any] | None = None,
    timeout_seconds: float = PROBE_TIMEOUT_SECONDS,
) -> DatabaseProbe:
    """Connect, list the tables and compare applied migrations with those on disk; never raises."""
    from django.db.migrations.recorder import MigrationRecorder

    settings_dict = settings_dict if settings_dict is not None else connections[alias].settings_dict
    started = time.monotonic()
    missing = _sqlite_missing(settings_dict)
    if missing:
        return DatabaseProbe(reachable=False, error=missing, seconds=time.monotonic() - started)
    conn = None
    try:
        conn = _private_connection(settings_dict, timeout_seconds)
        conn.ensure_connection()
        vendor = conn.display_name
        tables = frozenset(conn.introspection.table_names())
        applied: set[tuple[str, str]] = set()
        recorder_table = MigrationRecorder.Migration._meta.db_table
        if recorder_table in tables:
            applied = migrations_applied(conn=conn, table=recorder_table)
    except (DatabaseError, ImproperlyConfigured, OSError) as exc:
        return DatabaseProbe(
            reachable=False, error=_clean_error(exc, settings_dict), seconds=time.monotonic() - started
        )
    finally:
        if conn is not None:
            conn.close()
    unapplied = tuple(sorted(f"{app}.{name}" for app, name in expected_migrations() - applied))
    return DatabaseProbe(
        reachable=True, vendor=vendor, seconds=time.monotonic() - started, tables=tables, unapplied=unapplied
    )


def _clean_error(exc: BaseException, settings_dict: dict[str, Any]) -> str:
    """The first line of a driver error, without the password."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    password = settings_dict.get("PASSWORD")
    if password:
        line = line.replace(str(password), "***")
    return mask_urls_in_text(line)[:300]
