"""Database URLs: validated before Django uses them, and masked whenever people see them.

``aicmo_site/settings.py`` imports this module while settings load, so it imports nothing from
Django at module level.
"""

import importlib.util
import re
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

#: URL scheme → (Django backend, driver modules any one of which Django can use).
BACKENDS = {
    "postgres": ("postgresql", ("psycopg2", "psycopg")),
    "postgresql": ("postgresql", ("psycopg2", "psycopg")),
    "pgsql": ("postgresql", ("psycopg2", "psycopg")),
    "sqlite": ("sqlite", ("sqlite3",)),
    "mysql": ("mysql", ("MySQLdb",)),
    "oracle": ("oracle", ("oracledb",)),
}
#: Drivers (the ``+driver`` of SQLAlchemy-style URLs) that only work with asyncio, and the module of each.
ASYNC_DRIVERS = {
    "asyncpg": "asyncpg",
    "aiosqlite": "aiosqlite",
    "aiomysql": "aiomysql",
    "asyncmy": "asyncmy",
    "psycopg_async": "psycopg",
}
#: Synchronous drivers Django can use; the ``+driver`` suffix is dropped before Django sees the URL.
SYNC_DRIVERS = {
    "psycopg2": "psycopg2",
    "psycopg": "psycopg",
    "pysqlite": "sqlite3",
    "mysqldb": "MySQLdb",
    "oracledb": "oracledb",
}
#: Query parameters whose values are secrets.
SECRET_PARAMS = {"password", "passwd", "sslpassword", "secret", "token"}
#: ``scheme://user:password@`` inside free text; greedy up to the last ``@`` of the authority.
_EMBEDDED_PASSWORD = re.compile(r"(\b[A-Za-z][\w+.-]*://[^:/@\s]*:)[^\s/]+(@)")


def mask_url(url: str) -> str:
    """``url`` with its password (and secret query parameters) replaced by ``***``; the rest stays readable."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if not parts.netloc:
        # Not scheme://…: no telling what is a password, so hide everything before the last "@".
        return f"***@{url.rsplit('@', 1)[1]}" if "@" in url else url
    if password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{netloc}")
    if parts.query:
        query = parse_qsl(parts.query, keep_blank_values=True)
        if any(name.lower() in SECRET_PARAMS for name, _ in query):
            masked = [(name, "***" if name.lower() in SECRET_PARAMS else value) for name, value in query]
            parts = parts._replace(query=urlencode(masked, safe="*/:"))
    return urlunsplit(parts)


def _module_installed(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def url_for_django(url: str) -> str:
    """``url`` without a synchronous ``+driver`` suffix, which Django (django-environ) does not understand."""
    scheme, sep, rest = url.partition("://")
    base, plus, driver = scheme.partition("+")
    if sep and plus and driver.lower() in SYNC_DRIVERS:
        return f"{base}://{rest}"
    return url


def validate_database_url(url: str | None = None) -> dict[str, Any]:
    """Check a database URL for the synchronous ORM, without connecting.

    Returns ``valid`` (no issues), ``scheme``, ``driver`` (from ``scheme+driver``, else None),
    ``backend``, ``issues`` (the URL cannot work), ``warnings`` (it works, but probably not as
    meant) and ``masked``. ``url=None`` checks the configured DATABASE_URL. Never raises, and
    nothing it returns contains the password.
    """
    if url is None:
        url = configured_database_url_masked()
    issues: list[str] = []
    warnings: list[str] = []
    result: dict[str, Any] = {
        "valid": False,
        "scheme": "",
        "driver": None,
        "backend": "",
        "issues": issues,
        "warnings": warnings,
        "masked": mask_url(url or ""),
    }
    example = "expected e.g. postgresql://user:password@host:5432/name or sqlite:////absolute/path/db.sqlite3"
    if not isinstance(url, str) or not url.strip():
        issues.append(f"DATABASE_URL is empty; {example}.")
        return result
    if url != url.strip():
        warnings.append("DATABASE_URL has leading or trailing whitespace.")
        url = url.strip()
    if "://" not in url:
        issues.append(f"DATABASE_URL is not a URL (no scheme://); {example}.")
        return result
    scheme_full = url.split("://", 1)[0].lower()
    scheme, _, driver = scheme_full.partition("+")
    result["scheme"], result["driver"] = scheme, driver or None
    if scheme not in BACKENDS:
        known = ", ".join(f"{name}://" for name in sorted(BACKENDS))
        issues.append(f"Unknown database scheme {scheme!r} (known: {known}).")
        return result
    backend, modules = BACKENDS[scheme]
    result["backend"] = backend
    if driver in ASYNC_DRIVERS:
        issues.append(
            f"{scheme}+{driver}:// names the async driver {driver!r}; Django's ORM here is synchronous and cannot "
            f"use it. Use {scheme}://… instead (Django picks a synchronous driver itself)."
        )
        if not _module_installed(ASYNC_DRIVERS[driver]):
            issues.append(f"The driver module {ASYNC_DRIVERS[driver]!r} named in the URL is not installed either.")
    elif driver and driver not in SYNC_DRIVERS:
        issues.append(f"Unknown driver {driver!r} in {scheme}+{driver}://; drop the +{driver} suffix.")
    elif driver:
        if not _module_installed(SYNC_DRIVERS[driver]):
            issues.append(f"The driver module {SYNC_DRIVERS[driver]!r} named in the URL is not installed.")
        warnings.append(f"The +{driver} suffix is SQLAlchemy syntax; it is ignored (Django picks its driver).")
    if not driver and not any(_module_installed(module) for module in modules):
        issues.append(
            f"No {backend} driver is installed (one of: {', '.join(modules)}); install it or use another database."
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        issues.append(f"DATABASE_URL cannot be parsed: {mask_url(str(exc))}.")
        return result
    if backend == "sqlite":
        _check_sqlite_path(parts, warnings)
    elif not parts.path.strip("/"):
        issues.append(f"No database name: add it after the host, e.g. {scheme}://user@host:5432/aicmo.")
    result["valid"] = not issues
    return result


def _check_sqlite_path(parts: SplitResult, warnings: list[str]) -> None:
    # sqlite:///relative.db → path "/relative.db"; sqlite:////abs/x.db → path "//abs/x.db".
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc:
        warnings.append(f"sqlite://{parts.netloc}/… has a host part, which SQLite ignores; use sqlite:////abs/path.")
    if path in ("", ":memory:"):
        warnings.append(
            "An in-memory SQLite database is private to each process: the web console and the daemon cannot share "
            "it, and it is empty at every start. Use a file: sqlite:////absolute/path/db.sqlite3."
        )
    elif not path.startswith("/"):
        warnings.append(
            f"The SQLite path {path!r} is relative: it depends on the directory each process starts in. "
            "Use an absolute path: sqlite:////absolute/path/db.sqlite3 (four slashes)."
        )


def configured_database_url_masked() -> str:
    """The masked DATABASE_URL the settings were loaded from (rebuilt from DATABASES if unknown)."""
    from django.conf import settings

    masked = getattr(settings, "DATABASE_URL_MASKED", "")
    return masked or database_url_masked()


def database_url_masked(alias: str = "default") -> str:
    """The URL of a configured connection, rebuilt from its settings without the password."""
    from django.conf import settings
    from django.db import connections

    db = connections[alias].settings_dict
    engine = db["ENGINE"].rsplit(".", 1)[-1]
    if alias == "default" and getattr(settings, "DATABASE_URL_ISSUES", None):
        return getattr(settings, "DATABASE_URL_MASKED", "") or "<unusable DATABASE_URL>"
    if engine == "sqlite3":
        return f"sqlite:///{db['NAME']}"
    scheme = {"postgresql": "postgresql", "mysql": "mysql"}.get(engine, engine)
    user = db.get("USER") or ""
    auth = f"{user}{':***' if db.get('PASSWORD') else ''}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"{scheme}://{auth}{db.get('HOST') or ''}{port}/{db.get('NAME') or ''}"


def redact(text: str, alias: str = "default") -> str:
    """``text`` with the connection's password (if any) replaced by ``***``: for error messages."""
    from django.db import connections

    password = connections[alias].settings_dict.get("PASSWORD")
    text = text.replace(password, "***") if password else text
    return mask_urls_in_text(text)


def mask_urls_in_text(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ``***``."""
    return _EMBEDDED_PASSWORD.sub(r"\1***\2", text)
