"""The operator console: a live status view, its JSON endpoint, and the controls it posts to.

The views are thin: ``status_snapshot(detail=True)`` builds everything shown, the services make
every change (and write the execution log and audit rows), and the views only authenticate,
check the one permission each control needs, validate the form and report back.
"""

import json
import logging
from functools import wraps

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from orchestration import permissions
from orchestration.conf import aol
from orchestration.exceptions import ControlChangeRejected, InvalidAction, InvalidPriority
from orchestration.forms import (
    ApproveForm,
    AttentionForm,
    EnqueueForm,
    QueueActionsForm,
    RejectForm,
    TypePauseForm,
    flag_form_class,
)
from orchestration.models import Action, ActionStatus
from orchestration.services import control
from orchestration.services.approval import action_approve, action_reject, approval_review
from orchestration.services.audit import admin_log_write, audit_denied
from orchestration.services.enqueue import action_enqueue_by_operator
from orchestration.services.operator import MAX_BULK_ACTIONS
from orchestration.services.operator_verb import (
    ACTION_TYPE,
    CONSOLE_ACTIONS,
    CONSOLE_ATTENTION,
    CONSOLE_FLAGS,
    CONSOLE_TYPES,
    OperatorVerb,
)
from orchestration.services.status import status_snapshot
from orchestration.services.verbs import operator_denied, operator_run, verb_for_console, verbs_where

logger = logging.getLogger("orchestration")


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


def staff_required(view=None, *, json: bool = False):
    """Anonymous: to the login page (JSON: 401). Logged in but not active staff: 403."""

    def decorate(view):
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            user = request.user
            if not user.is_authenticated:
                if json:
                    return JsonResponse({"error": "authentication required"}, status=401)
                next_url = request.get_full_path() if request.method == "GET" else reverse("orchestration:status")
                return redirect_to_login(next_url, reverse("admin:login"))
            if not (user.is_active and user.is_staff):
                if json:
                    return JsonResponse({"error": "staff only"}, status=403)
                return _denied(request, "The operator console is for staff users only.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorate(view) if view is not None else decorate


def _denied(request: HttpRequest, message: str) -> HttpResponse:
    context = {**admin.site.each_context(request), "title": "Not allowed", "message": message}
    return TemplateResponse(request, "orchestration/denied.html", context, status=403)


def _refuse(request: HttpRequest, *, verb: str, permission: str, target: str) -> HttpResponse:
    """Audit the refused attempt (nothing else changes) and answer 403."""
    audit_denied(
        actor=request.user.get_username(),
        verb=verb,
        permission=permission,
        reason=_posted_reason(request),
        target=target,
    )
    return _denied(request, f"You do not have the permission to {verb} ({permission}). Nothing was changed.")


def _posted_reason(request: HttpRequest) -> str:
    """The reason typed into whichever form was posted (its field name carries the form's prefix)."""
    return next((value for key, value in request.POST.items() if key == "reason" or key.endswith("-reason")), "")


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _status_page(request: HttpRequest, *, bound: dict[str, forms.Form] | None = None) -> TemplateResponse:
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
            {**_verb_context(user, verb), "form": bound.get(verb.name) or _verb_form(verb)}
            for verb in verbs_where(console=CONSOLE_FLAGS)
        ],
        **_group_context(user, CONSOLE_ATTENTION, "dlq", bound),
        "enqueue_form": bound.get("enqueue") or EnqueueForm(prefix="enqueue"),
        "enqueue_allowed": user.has_perm(permissions.ENQUEUE_ACTION),
        "refresh_ms": int(float(aol.console_refresh_seconds) * 1000),
        "refresh_seconds": f"{float(aol.console_refresh_seconds):g}",
        "max_bulk": MAX_BULK_ACTIONS,
        "permissions": permissions,
        **_flow_context(request, snapshot=snapshot, bound=bound),
    }
    return TemplateResponse(request, "orchestration/status.html", context)


def _verb_context(user, verb: OperatorVerb) -> dict:
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


def _group_context(user, group: str, name: str, bound: dict[str, forms.Form], **form_kwargs) -> dict:
    """One console form offering several verbs: ``<name>_form``, ``<name>_verbs``, ``<name>_missing``."""
    verbs = verbs_where(console=group)
    return {
        f"{name}_form": bound.get(FORM_PREFIXES[group]) or _verb_form(verbs[0], **form_kwargs),
        f"{name}_verbs": [_verb_context(user, verb) for verb in verbs],
        f"{name}_missing": sorted({verb.permission for verb in verbs if not user.has_perm(verb.permission)}),
    }


#: The prefix of each console form that offers several verbs (the flags' forms are prefixed by their verb).
FORM_PREFIXES = {CONSOLE_ATTENTION: "dlq", CONSOLE_TYPES: "types", CONSOLE_ACTIONS: "queue"}


def _verb_form(verb: OperatorVerb, data=None, *, paused: list[str] | None = None) -> forms.Form:
    """The console form that posts ``verb``."""
    if verb.console == CONSOLE_FLAGS:
        return flag_form_class(verb)(data, prefix=verb.name)
    prefix = FORM_PREFIXES[verb.console]
    if verb.console == CONSOLE_ATTENTION:
        return AttentionForm(data, prefix=prefix)
    if verb.console == CONSOLE_TYPES:
        if paused is None:
            paused = [pause.action_type for pause in control.control_paused_types()]
        return TypePauseForm(data, prefix=prefix, paused=paused)
    return QueueActionsForm(data, prefix=prefix, verb=verb)


@never_cache
@require_GET
@staff_required
def status(request: HttpRequest) -> HttpResponse:
    return _status_page(request)


@never_cache
@require_GET
@staff_required(json=True)
def status_json(request: HttpRequest) -> JsonResponse:
    """The same snapshot the page shows, for the page's refresh and for monitoring (staff only)."""
    return JsonResponse(status_snapshot(detail=True))


@require_POST
@staff_required
def operate(request: HttpRequest, group: str, slug: str) -> HttpResponse:
    """Every operator control of the status view; the verb table says what each needs and does."""
    verb = verb_for_console(group=group, slug=slug)
    if verb is None:
        raise Http404(f"Unknown control {slug!r}.")
    if not request.user.has_perm(verb.permission):
        target = f"action type {request.POST.get('types-action_type', '?')}" if verb.target == ACTION_TYPE else ""
        operator_denied(verb=verb, actor=_actor(request), reason=_posted_reason(request), target=target[:255])
        return _denied(
            request, f"You do not have the permission to {verb.audit_verb} ({verb.permission}). Nothing was changed."
        )
    form = _verb_form(verb, request.POST)
    if form.is_valid():
        try:
            result = operator_run(
                verb=verb,
                actor=_actor(request),
                reason=form.cleaned_data["reason"],
                user_id=request.user.pk,
                via="the status view",
                **form.operator_params(),
            )
        except InvalidPriority as exc:
            form.add_error("priority", str(exc))
        except ControlChangeRejected as exc:
            form.add_error(form.error_field, str(exc))
        else:
            (messages.success if result.changed else messages.info)(request, f"{verb.label}: {result.message}")
            return redirect("orchestration:status")
    # The POST keys carry the form's prefix; render the page with the errors beside the control.
    return _status_page(request, bound={form.prefix: form})


@require_POST
@staff_required
def enqueue(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(permissions.ENQUEUE_ACTION):
        return _refuse(request, verb="enqueue", permission=permissions.ENQUEUE_ACTION, target="action queue")
    form = EnqueueForm(request.POST, prefix="enqueue")
    if form.is_valid():
        data = form.cleaned_data
        try:
            action, created = action_enqueue_by_operator(
                action_type=data["action_type"],
                payload=data["payload"],
                idempotency_key=data["idempotency_key"] or None,
                not_before=data["not_before"],
                priority=data["priority"],
                requires_approval=data["requires_approval"],
                actor=_actor(request),
                reason=data["reason"],
            )
        except InvalidAction as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        except ControlChangeRejected as exc:
            form.add_error("reason", str(exc))
        else:
            url = reverse("admin:orchestration_action_change", args=[action.pk])
            if created:
                admin_log_write(
                    user_id=request.user.pk,
                    objects=[action],
                    flag=ADDITION,
                    message=f"enqueued from the status view; reason: {data['reason']}",
                )
                messages.success(
                    request, format_html('Enqueued <a href="{}">action #{}</a> ({}).', url, action.pk, action.status)
                )
            else:
                messages.info(
                    request,
                    format_html(
                        'The key is already used by <a href="{}">action #{}</a> with this payload; nothing written.',
                        url,
                        action.pk,
                    ),
                )
            return redirect("orchestration:status")
    return _status_page(request, bound={"enqueue": form})


# --- Flow control: per-type pause, cancel, priority, approvals (docs/flow-control.md) -------------------


def _flow_context(request: HttpRequest, *, snapshot: dict, bound: dict[str, forms.Form]) -> dict:
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


#: The most actions the approvals page lists.
APPROVALS_LISTED = 200


@never_cache
@require_GET
@staff_required
def approvals(request: HttpRequest) -> HttpResponse:
    waiting = list(Action.objects.awaiting_approval().order_by("-priority", "updated_at", "id")[: APPROVALS_LISTED + 1])
    context = {
        **admin.site.each_context(request),
        "title": "Approvals",
        "waiting": waiting[:APPROVALS_LISTED],
        "more": len(waiting) > APPROVALS_LISTED,
        "approve_allowed": request.user.has_perm(permissions.APPROVE_ACTION),
        "permissions": permissions,
    }
    return TemplateResponse(request, "orchestration/approvals.html", context)


def _approval_page(
    request: HttpRequest, action: Action, *, bound: dict[str, forms.Form] | None = None, status: int = 200
):
    bound = bound or {}
    awaiting = action.status == ActionStatus.AWAITING_APPROVAL
    review = approval_review(action=action) if action.approval_artifact_ref else None
    context = {
        **admin.site.each_context(request),
        "title": f"Approve action #{action.pk}",
        "action": action,
        "awaiting": awaiting,
        "review": review,
        "payload": json.dumps(action.payload, indent=2, ensure_ascii=False, sort_keys=True),
        "approve_form": bound.get("approve")
        or ApproveForm(prefix="approve", initial={"sha256": action.approval_sha256}),
        "reject_form": bound.get("reject") or RejectForm(prefix="reject"),
        "approve_allowed": request.user.has_perm(permissions.APPROVE_ACTION),
        "permissions": permissions,
    }
    return TemplateResponse(request, "orchestration/approval.html", context, status=status)


@never_cache
@require_GET
@staff_required
def approval_detail(request: HttpRequest, action_id: int) -> HttpResponse:
    action = Action.objects.filter(pk=action_id).first()
    if action is None:
        raise Http404(f"No action #{action_id}.")
    return _approval_page(request, action)


@require_POST
@staff_required
def approval_decide(request: HttpRequest, action_id: int, decision: str) -> HttpResponse:
    if decision not in ("approve", "reject"):
        raise Http404(f"Unknown decision {decision!r}.")
    if not request.user.has_perm(permissions.APPROVE_ACTION):
        return _refuse(request, verb=decision, permission=permissions.APPROVE_ACTION, target=f"action #{action_id}")
    action = Action.objects.filter(pk=action_id).first()
    if action is None:
        raise Http404(f"No action #{action_id}.")
    form = (ApproveForm if decision == "approve" else RejectForm)(request.POST, prefix=decision)
    if form.is_valid():
        data = form.cleaned_data
        try:
            if decision == "approve":
                action = action_approve(
                    action_id=action.pk, sha256=data["sha256"], actor=_actor(request), reason=data["reason"]
                )
            else:
                action = action_reject(action_id=action.pk, actor=_actor(request), reason=data["reason"])
        except ControlChangeRejected as exc:
            form.add_error(None, str(exc))
        else:
            admin_log_write(
                user_id=request.user.pk,
                objects=[action],
                message=f"{decision} from the console (sha256 {action.approval_sha256}); reason: {data['reason']}",
            )
            if decision == "approve":
                messages.success(
                    request,
                    f"Action #{action.pk} approved: it runs for real next, bound to sha256 {action.approval_sha256}.",
                )
            else:
                messages.success(request, f"Action #{action.pk} rejected: it will not run for real.")
            return redirect("orchestration:approvals")
    action.refresh_from_db()
    return _approval_page(request, action, bound={decision: form})
