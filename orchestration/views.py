"""The operator console: a live status view, its JSON endpoint, and the controls it posts to.

The views are thin: ``status_snapshot(detail=True)`` builds everything shown, the services make
every change (and write the execution log and audit rows), and the views only authenticate,
check the one permission each control needs, validate the form and report back.
"""

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
from orchestration.exceptions import ControlChangeRejected, IdempotencyConflict, InvalidAction, UnknownActionType
from orchestration.forms import DlqForm, EnqueueForm, KillForm, RealModeForm, ReasonForm
from orchestration.models import Action
from orchestration.services import control, queue
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
                actor=_actor(request),
                reason=data["reason"],
            )
        except UnknownActionType as exc:
            form.add_error("action_type", str(exc))
        except IdempotencyConflict as exc:
            form.add_error("idempotency_key", str(exc))
        except InvalidAction as exc:
            form.add_error("idempotency_key" if "idempotency key" in str(exc).lower() else "payload", str(exc))
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
