"""The operator console: a live status view, its JSON endpoint, and the controls it posts to.

The views are thin: ``status_snapshot(detail=True)`` builds everything shown, the services make
every change (and write the execution log and audit rows), and the views only authenticate,
check the one permission each control needs, validate the form and report back.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
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
    DlqForm,
    EnqueueForm,
    KillForm,
    QueueActionsForm,
    RealModeForm,
    ReasonForm,
    RejectForm,
    TypePauseForm,
)
from orchestration.models import Action, ActionStatus
from orchestration.services import control, flow, queue
from orchestration.services.approval import action_approve, action_reject, approval_review
from orchestration.services.audit import admin_log_write, audit_denied
from orchestration.services.status import status_snapshot

logger = logging.getLogger("orchestration")


@dataclass(frozen=True)
class Control:
    """One flag control: the permission it needs, its form, and the service that makes the change."""

    label: str
    permission: str
    form: type[forms.Form]
    change: Callable[..., tuple]
    danger: bool = False


CONTROLS: dict[str, Control] = {
    "pause": Control("Pause", permissions.PAUSE_DAEMON, ReasonForm, control.control_pause),
    "resume": Control("Resume", permissions.PAUSE_DAEMON, ReasonForm, control.control_resume),
    "kill": Control("Kill", permissions.KILL_DAEMON, KillForm, control.control_kill, danger=True),
    "revive": Control("Revive", permissions.KILL_DAEMON, ReasonForm, control.control_revive),
    # Back to PROOF is the safe direction: whoever may pause may do it. REAL needs its own permission.
    "proof": Control(
        "Switch to PROOF",
        permissions.PAUSE_DAEMON,
        ReasonForm,
        lambda **kw: control.control_set_proof_mode(enabled=True, **kw),
    ),
    "real": Control(
        "Switch to REAL",
        permissions.SWITCH_MODE,
        RealModeForm,
        lambda **kw: control.control_set_proof_mode(enabled=False, **kw),
        danger=True,
    ),
}

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

DLQ_OPERATIONS = {
    "retry": ("retry DLQ", queue.action_retry_dlq, "back to PENDING with attempts reset"),
    "discard": ("discard DLQ", queue.action_discard_dlq, "marked FAILED (kept, not deleted)"),
}


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
    forms_by_name = {name: bound.get(name) or spec.form(prefix=name) for name, spec in CONTROLS.items()}
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
            {
                "name": name,
                "label": spec.label,
                "form": forms_by_name[name],
                "allowed": user.has_perm(spec.permission),
                "permission": spec.permission,
                "danger": spec.danger,
            }
            for name, spec in CONTROLS.items()
        ],
        "dlq_form": bound.get("dlq") or DlqForm(prefix="dlq"),
        "dlq_allowed": user.has_perm(permissions.MANAGE_DLQ),
        "enqueue_form": bound.get("enqueue") or EnqueueForm(prefix="enqueue"),
        "enqueue_allowed": user.has_perm(permissions.ENQUEUE_ACTION),
        "refresh_ms": int(float(aol.console_refresh_seconds) * 1000),
        "refresh_seconds": f"{float(aol.console_refresh_seconds):g}",
        "max_bulk": queue.MAX_BULK_ACTIONS,
        "permissions": permissions,
        **_flow_context(request, snapshot=snapshot, bound=bound),
    }
    return TemplateResponse(request, "orchestration/status.html", context)


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
def control_change(request: HttpRequest, verb: str) -> HttpResponse:
    spec = CONTROLS.get(verb)
    if spec is None:
        raise Http404(f"Unknown control {verb!r}.")
    service_verb = {"proof": "switch to PROOF", "real": "switch to REAL"}.get(verb, verb)
    if not request.user.has_perm(spec.permission):
        return _refuse(request, verb=service_verb, permission=spec.permission, target="control flags")
    form = spec.form(request.POST, prefix=verb)
    if form.is_valid():
        try:
            flags, changed = spec.change(actor=_actor(request), reason=form.cleaned_data["reason"])
        except ControlChangeRejected as exc:
            form.add_error("reason", str(exc))
        else:
            mode = "PROOF" if flags.proof_mode else "REAL"
            summary = f"paused={flags.paused}, killed={flags.killed}, mode={mode}"
            admin_log_write(
                user_id=request.user.pk,
                objects=[flags],
                message=f"{service_verb} from the status view{'' if changed else ' (no change)'}: "
                f"{summary}; reason: {form.cleaned_data['reason']}",
            )
            if changed:
                messages.success(request, f"{spec.label}: done ({summary}).")
            else:
                messages.info(request, f"{spec.label}: it already was so; nothing changed ({summary}).")
            return redirect("orchestration:status")
    # request.POST keys carry the prefix; render the page with the errors beside the control.
    return _status_page(request, bound={verb: form})


@require_POST
@staff_required
def dlq_change(request: HttpRequest, operation: str) -> HttpResponse:
    if operation not in DLQ_OPERATIONS:
        raise Http404(f"Unknown DLQ operation {operation!r}.")
    verb, service, outcome = DLQ_OPERATIONS[operation]
    if not request.user.has_perm(permissions.MANAGE_DLQ):
        return _refuse(request, verb=verb, permission=permissions.MANAGE_DLQ, target="DLQ")
    form = DlqForm(request.POST, prefix="dlq")
    if form.is_valid():
        try:
            ids = service(action_ids=form.selected_ids(), actor=_actor(request), reason=form.cleaned_data["reason"])
        except ControlChangeRejected as exc:
            form.add_error("reason", str(exc))
        else:
            admin_log_write(
                user_id=request.user.pk,
                objects=Action.objects.filter(pk__in=ids),
                message=f"{verb} from the status view; reason: {form.cleaned_data['reason']}",
            )
            if ids:
                messages.success(request, f"{verb}: {len(ids)} action(s) {outcome}.")
            else:
                messages.warning(request, f"{verb}: no DLQ action matched; nothing changed.")
            return redirect("orchestration:status")
    return _status_page(request, bound={"dlq": form})


@require_POST
@staff_required
def enqueue(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(permissions.ENQUEUE_ACTION):
        return _refuse(request, verb="enqueue", permission=permissions.ENQUEUE_ACTION, target="action queue")
    form = EnqueueForm(request.POST, prefix="enqueue")
    if form.is_valid():
        data = form.cleaned_data
        try:
            action, created = queue.action_enqueue_by_operator(
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
        "type_pause_form": bound.get("types") or TypePauseForm(prefix="types", paused=paused),
        "type_pause_allowed": user.has_perm(permissions.PAUSE_DAEMON),
        "queue_form": bound.get("queue") or QueueActionsForm(prefix="queue"),
        "queue_allowed": user.has_perm(permissions.MANAGE_DLQ),
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


TYPE_CONTROLS = {
    "pause": ("pause type", control.control_pause_type, "paused: no new action of it starts"),
    "resume": ("resume type", control.control_resume_type, "resumed"),
}


@require_POST
@staff_required
def type_pause_change(request: HttpRequest, verb: str) -> HttpResponse:
    if verb not in TYPE_CONTROLS:
        raise Http404(f"Unknown control {verb!r}.")
    label, service, outcome = TYPE_CONTROLS[verb]
    if not request.user.has_perm(permissions.PAUSE_DAEMON):
        target = f"action type {request.POST.get('types-action_type', '?')}"[:255]
        return _refuse(request, verb=label, permission=permissions.PAUSE_DAEMON, target=target)
    paused = list(control.control_paused_types())
    form = TypePauseForm(request.POST, prefix="types", paused=[p.action_type for p in paused])
    if form.is_valid():
        action_type = form.cleaned_data["action_type"]
        try:
            _, changed = service(action_type=action_type, actor=_actor(request), reason=form.cleaned_data["reason"])
        except ControlChangeRejected as exc:
            form.add_error("action_type", str(exc))
        else:
            if changed:
                messages.success(request, f"{action_type} {outcome}.")
            else:
                messages.info(request, f"{action_type}: it already was so; nothing changed.")
            return redirect("orchestration:status")
    return _status_page(request, bound={"types": form})


@require_POST
@staff_required
def queue_actions_change(request: HttpRequest, operation: str) -> HttpResponse:
    """Cancel actions, or set their priority, by id (manage_dlq)."""
    verbs = {"cancel": "cancel", "priority": "set priority"}
    if operation not in verbs:
        raise Http404(f"Unknown operation {operation!r}.")
    if not request.user.has_perm(permissions.MANAGE_DLQ):
        return _refuse(request, verb=verbs[operation], permission=permissions.MANAGE_DLQ, target="actions")
    form = QueueActionsForm(request.POST, prefix="queue")
    if form.is_valid():
        ids, reason = form.cleaned_data["action_ids"], form.cleaned_data["reason"]
        try:
            if operation == "cancel":
                report = flow.action_cancel(action_ids=ids, actor=_actor(request), reason=reason)
                changed = [*report.cancelled, *report.stop_requested]
                summary = f"{len(report.cancelled)} action(s) cancelled" + (
                    f", {len(report.stop_requested)} running action(s) asked to stop" if report.stop_requested else ""
                )
            else:
                if form.cleaned_data["priority"] is None:
                    raise InvalidPriority("Give the new priority.")
                changed = flow.action_set_priority(
                    action_ids=ids, priority=form.cleaned_data["priority"], actor=_actor(request), reason=reason
                )
                summary = f"{len(changed)} action(s) now at priority {form.cleaned_data['priority']}"
        except InvalidPriority as exc:
            form.add_error("priority", str(exc))
        except ControlChangeRejected as exc:
            form.add_error("action_ids", str(exc))
        else:
            admin_log_write(
                user_id=request.user.pk,
                objects=Action.objects.filter(pk__in=changed),
                message=f"{verbs[operation]} from the status view; reason: {reason}",
            )
            if changed:
                messages.success(request, f"{verbs[operation]}: {summary}.")
            else:
                messages.info(request, f"{verbs[operation]}: nothing needed changing.")
            return redirect("orchestration:status")
    return _status_page(request, bound={"queue": form})


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
