"""Who may use the operator console, and how a refusal is answered and audited."""

from collections.abc import Callable
from functools import wraps
from typing import Any, overload

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from orchestration.services.audit import audit_denied

View = Callable[..., HttpResponse]


@overload
def staff_required(view: View, *, json: bool = False) -> View: ...


@overload
def staff_required(view: None = None, *, json: bool = False) -> Callable[[View], View]: ...


def staff_required(view: View | None = None, *, json: bool = False) -> View | Callable[[View], View]:
    """Anonymous: to the login page (JSON: 401). Logged in but not active staff: 403."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            if not user.is_authenticated:
                if json:
                    return JsonResponse({"error": "authentication required"}, status=401)
                next_url = request.get_full_path() if request.method == "GET" else reverse("orchestration:status")
                return redirect_to_login(next_url, reverse("admin:login"))
            if not (user.is_active and user.is_staff):
                if json:
                    return JsonResponse({"error": "staff only"}, status=403)
                return denied(request, "The operator console is for staff users only.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorate(view) if view is not None else decorate


def denied(request: HttpRequest, message: str) -> HttpResponse:
    context = {**admin.site.each_context(request), "title": "Not allowed", "message": message}
    return TemplateResponse(request, "orchestration/denied.html", context, status=403)


def refuse(request: HttpRequest, *, verb: str, permission: str, target: str) -> HttpResponse:
    """Audit the refused attempt (nothing else changes) and answer 403."""
    audit_denied(
        actor=actor_of(request),
        verb=verb,
        permission=permission,
        reason=posted_reason(request),
        target=target,
    )
    return denied(request, f"You do not have the permission to {verb} ({permission}). Nothing was changed.")


def posted_reason(request: HttpRequest) -> str:
    """The reason typed into whichever form was posted (its field name carries the form's prefix)."""
    return next((request.POST[key] for key in request.POST if key == "reason" or key.endswith("-reason")), "")


def user_id_of(request: HttpRequest) -> int:
    """The signed-in user's id, for Django's admin log; only views behind ``staff_required`` ask."""
    if request.user.pk is None:
        raise PermissionDenied
    return request.user.pk


def actor_of(request: HttpRequest) -> str:
    return request.user.get_username()
