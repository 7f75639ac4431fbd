"""The operator console's Overview (/console/) and its JSON endpoint.

The views are thin: ``status_snapshot(detail=True)`` builds everything shown, the services make
every change (and write the execution log and audit rows), and the views only authenticate,
check the one permission each control needs, validate the form and report back.
"""

from typing import Any

from django import forms
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from orchestration.conf import aol
from orchestration.models import ActionStatus
from orchestration.services.operator_verb import (
    CONSOLE_FLAGS,
    OperatorVerb,
)
from orchestration.services.status import status_snapshot
from orchestration.services.verbs import verbs_where
from orchestration.web.access import staff_required
from orchestration.web.forms import FORM_PREFIXES, verb_form
from orchestration.web.layout import console_context

#: The queue card's rows: label, status, extra CSS class. Every status is shown, so the rows add up.
QUEUE_ROWS = (
    ("Pending", ActionStatus.PENDING, ""),
    ("Ready", ActionStatus.READY, ""),
    ("Running", ActionStatus.RUNNING, ""),
    ("Retry", ActionStatus.RETRY, ""),
    ("DLQ", ActionStatus.DLQ, "dlq-count"),
    ("Succeeded", ActionStatus.SUCCESS, ""),
    ("Failed", ActionStatus.FAILED, ""),
    ("Needs review", ActionStatus.NEEDS_REVIEW, ""),
    ("Awaiting approval", ActionStatus.AWAITING_APPROVAL, "approval-count"),
    ("Cancelled", ActionStatus.CANCELLED, ""),
    ("Rejected", ActionStatus.REJECTED, ""),
    ("Retracted", ActionStatus.RETRACTED, ""),
)


def status_page(request: HttpRequest, *, bound: dict[str, forms.Form] | None = None) -> TemplateResponse:
    """The Overview, with ``bound`` (forms by prefix, carrying their errors) in place of the empty forms."""
    bound = bound or {}
    user = request.user
    snapshot = status_snapshot(detail=True)
    context = console_context(
        request,
        view="status",
        title="Overview",
        bound=bound,
        snapshot=snapshot,
        queue_rows=[
            {
                "label": label,
                "status": str(status),
                "count": snapshot["counts"][status],
                "estimated": status in snapshot["counts_estimated"],
                "css": css,
            }
            for label, status, css in QUEUE_ROWS
        ],
        refusing_real=[adapter for adapter in snapshot["adapters"] if not adapter["supports_real"]],
        controls=[
            {**verb_context(user, verb), "form": bound.get(verb.name) or verb_form(verb)}
            for verb in verbs_where(console=CONSOLE_FLAGS)
        ],
        refresh_ms=int(float(aol.console_refresh_seconds) * 1000),
        refresh_seconds=f"{float(aol.console_refresh_seconds):g}",
    )
    return TemplateResponse(request, "orchestration/status.html", context)


def verb_context(user: User | AnonymousUser, verb: OperatorVerb) -> dict[str, Any]:
    return {
        "name": verb.name,
        "slug": verb.slug,
        "label": verb.label,
        "description": verb.description,
        "permission": verb.permission,
        "allowed": user.has_perm(verb.permission),
        "danger": verb.danger,
        "confirm": verb.confirm,
    }


def group_context(
    user: User | AnonymousUser, group: str, name: str, bound: dict[str, forms.Form], **form_kwargs: Any
) -> dict[str, Any]:
    """One console form offering several verbs: ``<name>_form``, ``<name>_verbs``, ``<name>_missing``."""
    verbs = verbs_where(console=group)
    return {
        f"{name}_form": bound.get(FORM_PREFIXES[group]) or verb_form(verbs[0], **form_kwargs),
        f"{name}_verbs": [verb_context(user, verb) for verb in verbs],
        f"{name}_missing": sorted({verb.permission for verb in verbs if not user.has_perm(verb.permission)}),
    }


@never_cache
@require_GET
@staff_required
def status(request: HttpRequest) -> HttpResponse:
    return status_page(request)


@never_cache
@require_GET
@staff_required(json=True)
def status_json(request: HttpRequest) -> JsonResponse:
    """The same snapshot the page shows, for the page's refresh and for monitoring (staff only)."""
    return JsonResponse(status_snapshot(detail=True))
