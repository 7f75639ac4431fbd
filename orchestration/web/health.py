"""Health endpoints (/healthz, /readyz, /metrics) and the diagnostics page.

None of them needs the database to answer: /healthz never touches it, /readyz and the diagnostics
page probe it on a private short-timeout connection, /metrics reports ``aol_database_up 0``.

Who may see the diagnostics page (see docs/health.md):
- Database reachable and migrated far enough for logins: staff only (others go to the login
  page); "Apply migrations" for superusers only.
- Sign-in impossible (database down, misconfigured, or without its auth tables): the page still
  renders, with HTTP 503. Everyone sees why in one generic line. The full non-database diagnostics
  (masked URL, versions, LLM status, sentinels) are shown only to a browser that carries the signed
  staff cookie this page set on an earlier staff visit (SECRET_KEY-signed, HttpOnly, SameSite=Strict,
  8 hours). Nothing that needs the database, such as applying migrations, is offered then.
"""

import hmac
import logging
import platform
import sys
from io import StringIO
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from orchestration.conf import aol
from orchestration.dburl import configured_database_url_masked, mask_urls_in_text, validate_database_url
from orchestration.services.health import DatabaseProbe, database_probe

logger = logging.getLogger("orchestration")

STAFF_COOKIE = "aol_diagnostics_staff"
STAFF_COOKIE_SALT = "orchestration.diagnostics.staff"
STAFF_COOKIE_MAX_AGE_SECONDS = 8 * 3600
MIGRATE_CONFIRMATION = "migrate"


# --- Probes for load balancers and orchestrators ---------------------------------------------------


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers. Never touches the database."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database is reachable and migrated and the artifact store takes writes (the files
    store: the directory, with its minimum free space; the database store: the database itself); 503
    with one short, secret-free reason otherwise."""
    from orchestration.adapters.store import artifact_store_probe_detail

    probe = database_probe()
    if not probe.ready:
        return JsonResponse({"status": "unavailable", "reason": probe.public_reason}, status=503)
    artifacts = artifact_store_probe_detail()
    if not artifacts.ok:
        return JsonResponse({"status": "unavailable", "reason": artifacts.public_reason}, status=503)
    return JsonResponse({"status": "ready"})


# --- Metrics ---------------------------------------------------------------------------------------


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for a staff session or ``Authorization: Bearer <AOL_METRICS_TOKEN>``."""
    from orchestration.metrics import metrics_render

    if not _metrics_allowed(request):
        response = HttpResponse(
            "Authentication required: a staff session, or Authorization: Bearer <AOL_METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="aol-metrics"'
        return response
    body, content_type = metrics_render()
    return HttpResponse(body, content_type=content_type)


def _metrics_allowed(request: HttpRequest) -> bool:
    token = aol.metrics_token or ""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        # A presented token is judged alone (constant time); a wrong one is never rescued by a session.
        return bool(token) and hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())
    return _is_staff(request) is True


def _is_staff(request: HttpRequest) -> bool | None:
    """True/False, or None when the user cannot be looked up (the database is down or unmigrated)."""
    try:
        user = request.user
        return bool(user.is_authenticated and user.is_active and user.is_staff)
    except (DatabaseError, ImproperlyConfigured):
        return None


# --- Diagnostics -----------------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def diagnostics(request: HttpRequest) -> HttpResponse:
    probe = database_probe()
    staff = _is_staff(request) if probe.auth_available else None
    if staff is None:
        return _diagnostics_degraded(request, probe)
    if not staff:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    context = _diagnostics_context(probe)
    context["can_migrate"] = request.user.is_superuser
    if request.method == "POST":
        operation = request.POST.get("operation", "")
        if operation == "validate_url":
            context["url_check"] = _validate_url(request.POST.get("url", ""))
        elif operation == "migrate":
            if not request.user.is_superuser:
                return HttpResponse("Only superusers may apply migrations.", status=403)
            if request.POST.get("confirm", "").strip() != MIGRATE_CONFIRMATION:
                context["migrate_error"] = f"Type {MIGRATE_CONFIRMATION!r} to confirm; nothing was applied."
            else:
                context["migrate_output"], context["migrate_ok"] = _apply_migrations(request.user.get_username())
                probe = database_probe()
                context.update(_diagnostics_context(probe))
        else:
            return HttpResponse("Unknown operation.", status=400)
    elif request.GET.get("run") == "sentinels":
        context["sentinels"] = _run_sentinels()
    response = render(request, "orchestration/diagnostics.html", context)
    response.set_signed_cookie(
        STAFF_COOKIE,
        request.user.get_username(),
        salt=STAFF_COOKIE_SALT,
        max_age=STAFF_COOKIE_MAX_AGE_SECONDS,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure(),
    )
    return response


def _diagnostics_degraded(request: HttpRequest, probe: DatabaseProbe) -> HttpResponse:
    """The page without sign-in: rendered without the request's context processors (they need the database)."""
    viewer = request.get_signed_cookie(
        STAFF_COOKIE, default=None, salt=STAFF_COOKIE_SALT, max_age=STAFF_COOKIE_MAX_AGE_SECONDS
    )
    context = {"degraded": True, "public_reason": probe.public_reason or "sign-in is unavailable", "viewer": viewer}
    if viewer:
        context.update(_diagnostics_context(probe))
        context["csrf_token"] = get_token(request)
        if request.method == "POST" and request.POST.get("operation") == "validate_url":
            context["url_check"] = _validate_url(request.POST.get("url", ""))
        elif request.GET.get("run") == "sentinels":
            context["sentinels"] = _run_sentinels()
    html = render_to_string("orchestration/diagnostics.html", context)
    return HttpResponse(html, status=503)


def _diagnostics_context(probe: DatabaseProbe) -> dict[str, Any]:
    import django

    from llm.runtime import safe_llm_status

    try:
        status_url = reverse("orchestration:status")
    except NoReverseMatch:
        status_url = ""
    return {
        "probe": probe,
        "database_url": configured_database_url_masked(),
        "url_check": validate_database_url(),
        "openai_key_set": bool(getattr(settings, "OPENAI_API_KEY", "")),
        "llm": safe_llm_status(),
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "django_version": django.get_version(),
        "proof_mode_setting": bool(aol.proof_mode),
        "artifacts_dir": str(aol.artifacts_dir),
        "artifact_store": str(aol.artifact_store),
        "status_url": status_url,
        "migrate_confirmation": MIGRATE_CONFIRMATION,
    }


def _validate_url(url: str) -> dict:
    """Validate a URL typed into the page (or the configured one); only the masked form is shown back."""
    url = (url or "").strip()
    result = validate_database_url(url or None)
    result["source"] = "the URL you entered" if url else "the configured DATABASE_URL"
    return result


def _run_sentinels() -> list:
    from orchestration.sentinels import sentinels_run

    return sentinels_run()


def _apply_migrations(username: str) -> tuple[str, bool]:
    """Run ``migrate`` in-process and return its output (redacted) and whether it succeeded."""
    from django.core.management import call_command

    out = StringIO()
    ok = True
    logger.warning("diagnostics: migrate requested by user=%s", username)
    try:
        call_command("migrate", interactive=False, stdout=out, stderr=out, no_color=True, verbosity=1)
    except Exception as exc:  # the page shows the failure instead of a 500
        ok = False
        out.write(f"\nmigrate failed: {type(exc).__name__}: {exc}\n")
        logger.error("diagnostics: migrate failed user=%s error=%s", username, mask_urls_in_text(str(exc)))
    text = mask_urls_in_text(out.getvalue())
    password = settings.DATABASES["default"].get("PASSWORD")
    if password:
        text = text.replace(password, "***")
    if ok:
        _audit_migrate(username, text)
    return text, ok


def _audit_migrate(username: str, output: str) -> None:
    """Record the applied migrations in the execution log and the audit trail, together."""
    from orchestration.models import AuditOutcome, LogLevel
    from orchestration.services.audit import audit_write
    from orchestration.services.logs import log_write

    applied = output.count("Applying ")
    try:
        with transaction.atomic():
            log_write(
                level=LogLevel.WARNING,
                message=f"migrations applied from the diagnostics page by {username}: {applied} migration(s)",
                actor=f"web:{username}",
            )
            audit_write(
                actor=username,
                verb="apply migrations",
                outcome=AuditOutcome.DONE if applied else AuditOutcome.NO_CHANGE,
                reason=f"confirmed by typing {MIGRATE_CONFIRMATION!r} on the diagnostics page",
                target="database schema",
                after={"migrations_applied": applied},
            )
    except DatabaseError as exc:
        logger.error("diagnostics: could not audit migrate user=%s error=%s", username, exc)
