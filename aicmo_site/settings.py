"""Django settings for the AICMO Autonomy Orchestration Layer.

Every environment variable the project reads is read here, and only here (django-environ).
Application code reads the results lazily through ``orchestration.conf``.
The defaults suit a laptop: an embedded SQLite database under ``var/``, PROOF mode on.
"""

import secrets
import warnings
from collections.abc import Callable, Collection
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from orchestration import conf as _aol_conf
from orchestration.dburl import mask_urls_in_text, url_for_django, validate_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()


def _typed(name: str, cast: Callable[..., Any], default: Any) -> Any:
    """Read one variable; a malformed value is kept as text for orchestration.checks to report
    by name (``AOL_MAX_ATTEMPTS='abc' must be a number greater than zero``) instead of a traceback."""
    try:
        return cast(name, default=default)
    except (ValueError, TypeError):
        return env.str(name)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/ (never committed)."""
    if env.str("SECRET_KEY", default=""):
        return env.str("SECRET_KEY")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _typed("DEBUG", env.bool, False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    # django-ninja (the planner API): listed so its docs page uses its bundled Swagger UI files, not a CDN.
    "ninja",
    "csp",
    "orchestration",
    "llm",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Under /api/: any error response the API did not shape itself (404, 405, 500) as problem+json.
    "orchestration.api.middleware.api_problems",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First, so that a locked-out address is refused before its password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "aicmo_site.urls"
WSGI_APPLICATION = "aicmo_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite is the embedded default; PostgreSQL is production. The SQLite options let the web
# console and the daemon write to one file at once: WAL lets readers run beside one writer,
# IMMEDIATE transactions take the write lock at BEGIN (so two writers queue on the busy
# timeout instead of failing with "database is locked" when a read upgrades to a write).
SQLITE_BUSY_TIMEOUT_SECONDS = 30
DEFAULT_DATABASE_URL = f"sqlite:///{VAR_DIR / 'local.db'}"
# A URL Django cannot use (an async driver, an unknown scheme, garbage) must not stop settings from
# loading: `manage.py check` then reports it as orchestration.E010/E011, check_sentinels and the
# diagnostics page explain it, and any database access raises one clear ImproperlyConfigured.
# Only the masked URL is kept as a setting; the password lives in DATABASES alone.
_database_url = env.str("DATABASE_URL", default=DEFAULT_DATABASE_URL)
_url_check = validate_database_url(_database_url)
DATABASE_URL_MASKED = _url_check["masked"]
DATABASE_URL_ISSUES = list(_url_check["issues"])
_db = {}
if not DATABASE_URL_ISSUES:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # django-environ's warnings print the parsed URL, password included
            _db = environ.Env.db_url_config(url_for_django(_database_url.strip()))
    except (ImproperlyConfigured, ValueError, KeyError) as exc:
        DATABASE_URL_ISSUES.append(f"DATABASE_URL cannot be parsed: {mask_urls_in_text(str(exc))}.")
if DATABASE_URL_ISSUES:
    _db = {"ENGINE": "orchestration.unusable_db", "NAME": ""}
del _database_url

if _db["ENGINE"] == "django.db.backends.sqlite3":
    if _db["NAME"] != ":memory:":
        Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests run against a file, not Django's in-memory default, so that a daemon subprocess
    # started by a test sees the same database.
    _db["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    _db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# The admin's dates in the console's format and zone: 2026-11-30 19:07:07 UTC (aicmo_site/formats/en/).
FORMAT_MODULE_PATH = "aicmo_site.formats"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the apps when collectstatic has not run (tests, dev).
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "admin:login"
# Where a login goes when ?next= is missing or points off-site (Django refuses those): the console,
# not Django's /accounts/profile/, which this site does not have.
LOGIN_REDIRECT_URL = "orchestration:status"

# --- HTTPS, cookies, framing ------------------------------------------------------------------
# AICMO_HTTPS=1 is for deployments served over HTTPS: it turns on the redirect to HTTPS, secure
# session and CSRF cookies and a one-year HSTS policy (with subdomains and preload), so that
# `manage.py check --deploy` is clean. Each can still be set on its own by its Django name.
AICMO_HTTPS = _typed("AICMO_HTTPS", env.bool, False)
SECURE_SSL_REDIRECT = _typed("SECURE_SSL_REDIRECT", env.bool, AICMO_HTTPS)
# Liveness and readiness answer over plain HTTP too: a load balancer or an orchestrator probes the
# server directly (not through the TLS proxy), and neither endpoint shows anything private.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = _typed("SESSION_COOKIE_SECURE", env.bool, AICMO_HTTPS)
CSRF_COOKIE_SECURE = _typed("CSRF_COOKIE_SECURE", env.bool, AICMO_HTTPS)
SECURE_HSTS_SECONDS = _typed("SECURE_HSTS_SECONDS", env.int, 365 * 24 * 3600 if AICMO_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _typed("SECURE_HSTS_INCLUDE_SUBDOMAINS", env.bool, AICMO_HTTPS)
SECURE_HSTS_PRELOAD = _typed("SECURE_HSTS_PRELOAD", env.bool, AICMO_HTTPS)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"  # no page of the console may be framed (clickjacking)

# Content-Security-Policy (django-csp) on every response: scripts, styles, images and fetches from this
# origin only, no inline script or style (every page's script and CSS is a static file), no plugins,
# no framing, forms posting only here. A page that needs more must move it into a static file.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# How many reverse proxies in front of the app append to X-Forwarded-For and can be trusted.
# 0 (the default): the client address is the socket's peer, and X-Forwarded-For is ignored, so
# a client cannot forge its address to dodge the login lockout. With N > 0, the address is the
# N-th entry from the right of X-Forwarded-For (the one the outermost trusted proxy saw).
AICMO_TRUSTED_PROXY_HOPS = _typed("AICMO_TRUSTED_PROXY_HOPS", env.int, 0)
if AICMO_TRUSTED_PROXY_HOPS < 0:
    raise ImproperlyConfigured(f"AICMO_TRUSTED_PROXY_HOPS={AICMO_TRUSTED_PROXY_HOPS} must be 0 or more.")
if AICMO_TRUSTED_PROXY_HOPS and AICMO_HTTPS:
    # The trusted proxy terminates TLS and says so in X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Login throttling (django-axes) -----------------------------------------------------------
# After AICMO_LOGIN_FAILURE_LIMIT failed logins for one username from one client address, that
# username gets HTTP 429 from that address until AICMO_LOGIN_COOLOFF_MINUTES have passed (or
# `manage.py axes_reset_username NAME`). Counting by address alone locked out every user behind one
# proxy after five typos of one of them; by username alone, anyone could lock an operator out.
AXES_FAILURE_LIMIT = _typed("AICMO_LOGIN_FAILURE_LIMIT", env.int, 5)
AXES_COOLOFF_TIME = timedelta(minutes=_typed("AICMO_LOGIN_COOLOFF_MINUTES", env.float, 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "orchestration/lockout.html"
AXES_CLIENT_IP_CALLABLE = "orchestration.security.client_ip"
if AXES_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured(f"AICMO_LOGIN_FAILURE_LIMIT={AXES_FAILURE_LIMIT} must be 1 or more.")

# --- Autonomy Orchestration Layer -------------------------------------------------------------
# Every AOL_* setting is declared once, with its default and parser, in orchestration/conf.py; each
# declared AOL_<NAME> variable becomes the setting of that name here. orchestration.checks rejects
# values that parse but make no sense (zero, negative, a lease TTL too close to the heartbeat).


def _names(name: str, default: Collection[str] | None) -> Collection[str] | None:
    """Comma-separated names, blanks stripped; set but empty: an empty list."""
    if name not in env.ENVIRON:
        return default
    return [part.strip() for part in env.str(name).split(",") if part.strip()]


def _project_path(name: str, default: Path) -> Path:
    """A path; the default is relative to the project directory."""
    return Path(env.str(name, default=str(BASE_DIR / default)))


_PARSERS = {
    "bool": env.bool,
    "int": env.int,
    "float": env.float,
    "str": env.str,
    "json": env.json,
    "list": env.list,
    "names": _names,
    "path": _project_path,
}
_aol = {
    setting.name: _typed(setting.name, _PARSERS[setting.parse], setting.default)
    for setting in _aol_conf.DECLARED_SETTINGS
}
globals().update(_aol)
# WEBHOOK signing secrets: AOL_WEBHOOKS names, per endpoint, the environment variable that holds its secret
# (secret_env). They are read here, the one reader of the environment, and kept apart from AOL_WEBHOOKS
# (and under a name Django's error reports mask), so that showing that setting never shows a secret.
WEBHOOK_SECRETS = {
    name: env.str(name) for name in _aol_conf.webhook_secret_envs(_aol["AOL_WEBHOOKS"]) if name in env.ENVIRON
}

# The approval notifications' webhook signing secret (AOL_APPROVAL_WEBHOOK_URL), read here under a name Django's
# error reports mask; never shown, logged or stored.
APPROVAL_WEBHOOK_SECRET = env.str("AOL_APPROVAL_WEBHOOK_SECRET", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "orchestration": {"handlers": ["console"], "level": _aol["AOL_LOG_LEVEL"]},
        "llm": {"handlers": ["console"], "level": "INFO"},
    },
}

# --- LLM (optional) ---------------------------------------------------------------------------
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
AICMO_OPENAI_MODEL = env.str("AICMO_OPENAI_MODEL", default="gpt-4o-mini")
AICMO_USE_LLM = _typed("AICMO_USE_LLM", env.bool, True)
# Each request to the LLM gives up after this long; failed requests are retried this many times
# (with the client's short backoff), so one call is bounded by about timeout × (retries + 1).
AICMO_LLM_TIMEOUT_SECONDS = _typed("AICMO_LLM_TIMEOUT_SECONDS", env.float, 20.0)
AICMO_LLM_MAX_RETRIES = _typed("AICMO_LLM_MAX_RETRIES", env.int, 1)

# --- Email: the SEND_EMAIL adapter's REAL mode ---------------------------------------------------
# Django's SMTP backend, configured from these variables. Without EMAIL_HOST the default backend is
# Django's dummy one (it sends nothing) and SEND_EMAIL refuses REAL mode, naming these variables.
# EMAIL_HOST_PASSWORD is only ever handed to the SMTP connection: never shown, logged or stored.
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_PORT = _typed("EMAIL_PORT", env.int, 25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = _typed("EMAIL_USE_TLS", env.bool, False)
EMAIL_USE_SSL = _typed("EMAIL_USE_SSL", env.bool, False)
# Seconds before a connect or a command to the SMTP server gives up (a transient failure, retried).
EMAIL_TIMEOUT = _typed("EMAIL_TIMEOUT", env.float, 10.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="aicmo@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.dummy.EmailBackend",
)
