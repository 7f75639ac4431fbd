"""Database URLs for people to read: the password is never shown."""

from urllib.parse import urlsplit, urlunsplit

from django.db import connections


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (the rest stays readable)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def database_url_masked(alias: str = "default") -> str:
    """The URL of a configured connection, rebuilt from its settings without the password."""
    db = connections[alias].settings_dict
    engine = db["ENGINE"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"sqlite:///{db['NAME']}"
    scheme = {"postgresql": "postgresql", "mysql": "mysql"}.get(engine, engine)
    user = db.get("USER") or ""
    auth = f"{user}{':***' if db.get('PASSWORD') else ''}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"{scheme}://{auth}{db.get('HOST') or ''}{port}/{db.get('NAME') or ''}"


def redact(text: str, alias: str = "default") -> str:
    """``text`` with the connection's password (if any) replaced by ``***``: for error messages."""
    password = connections[alias].settings_dict.get("PASSWORD")
    return text.replace(password, "***") if password else text
