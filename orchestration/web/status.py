"""The operator console's status page and its JSON endpoint.

The views are thin: ``status_snapshot(detail=True)`` builds everything shown, the services make
every change (and write the execution log and audit rows), and the views only authenticate,
check the one permission each control needs, validate the form and report back.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from orchestration import permissions
from orchestration.conf import aol
from orchestration.models import ActionStatus
from orchestration.services.operator import MAX_BULK_ACTIONS
from orchestration.services.operator_verb import (
    CONSOLE_ACTIONS,
    CONSOLE_ATTENTION,
    CONSOLE_FLAGS,
    CONSOLE_TYPES,
    OperatorVerb,
)
from orchestration.services.status import status_snapshot
from orchestration.services.verbs import verbs_where
from orchestration.web.access import staff_required
from orchestration.web.forms import FORM_PREFIXES, EnqueueForm, verb_form

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
)


def status_page(request: HttpRequest, *, bound: dict[str, forms.Form] | None = None) -> TemplateResponse:
    """The page, with ``bound`` (forms by prefix, carrying their errors) in place of the empty forms."""
    bound = bound or {}
    user = request.user
    snapshot = status_snapshot(detail=True)
    context = {
        **admin.site.each_context(request),
        "title": "AOL status",
        "snapshot": snapshot,
        "queue_rows": [
            {
                "label": label,
                "status": str(status),
                "count": snapshot["counts"][status],
                "estimated": status in snapshot["counts_estimated"],
                "css": css,
            }
            for label, status, css in QUEUE_ROWS
        ],
        "refusing_real": [adapter for adapter in snapshot["adapters"] if not adapter["supports_real"]],
        "controls": [
            {**_verb_context(user, verb), "form": bound.get(verb.name) or verb_form(verb)}
            for verb in verbs_where(console=CONSOLE_FLAGS)
        ],
        **_group_context(user, CONSOLE_ATTENTION, "dlq", bound),
        "enqueue_form": bound.get("enqueue") or EnqueueForm(prefix="enqueue"),
        "enqueue_allowed": user.has_perm(permissions.ENQUEUE_ACTION),
        "refresh_ms": int(float(aol.console_refresh_seconds) * 1000),
        "refresh_seconds": f"{float(aol.console_refresh_seconds):g}",
        "max_bulk": MAX_BULK_ACTIONS,
        "permissions": permissions,
        **_types_and_queue_context(request, snapshot=snapshot, bound=bound),
    }
    return TemplateResponse(request, "orchestration/status.html", context)


def _verb_context(user: User | AnonymousUser, verb: OperatorVerb) -> dict[str, Any]:
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


def _group_context(
    user: User | AnonymousUser, group: str, name: str, bound: dict[str, forms.Form], **form_kwargs: Any
) -> dict[str, Any]:
    """One console form offering several verbs: ``<name>_form``, ``<name>_verbs``, ``<name>_missing``."""
    verbs = verbs_where(console=group)
    return {
        f"{name}_form": bound.get(FORM_PREFIXES[group]) or verb_form(verbs[0], **form_kwargs),
        f"{name}_verbs": [_verb_context(user, verb) for verb in verbs],
        f"{name}_missing": sorted({verb.permission for verb in verbs if not user.has_perm(verb.permission)}),
    }


def _types_and_queue_context(request: HttpRequest, *, snapshot: dict, bound: dict[str, forms.Form]) -> dict:
    """The per-type card (pause, approval, settings) and the queue-actions form."""
    user = request.user
    paused = [pause["action_type"] for pause in snapshot["paused_types"]]
    return {
        **_group_context(user, CONSOLE_TYPES, "type_pause", bound, paused=paused),
        **_group_context(user, CONSOLE_ACTIONS, "queue", bound),
        "approve_allowed": user.has_perm(permissions.APPROVE_ACTION),
        "action_type_rows": [
            {
                "action_type": name,
                "pause": next((p for p in snapshot["paused_types"] if p["action_type"] == name), None),
                "approval": name in snapshot["approval_required_types"],
                "settings": next((t for t in snapshot["type_settings"] if t["action_type"] == name), None),
            }
            for name in sorted({t["action_type"] for t in snapshot["type_settings"]} | set(paused))
        ],
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
