"""The approvals pages: actions awaiting approval, one action's PROOF artifact, approve, reject or edit its text."""

import json

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from orchestration import permissions
from orchestration.adapters.post_social import post_text_count
from orchestration.exceptions import ControlChangeRejected
from orchestration.models import Action, ActionStatus
from orchestration.services.approval import (
    action_approve,
    action_edit_before_approval,
    action_editable_fields,
    action_reject,
    approval_review,
)
from orchestration.services.audit import admin_log_write
from orchestration.web.access import actor_of, refuse, staff_required, user_id_of
from orchestration.web.forms import ApproveForm, EditForm, RejectForm
from orchestration.web.layout import console_context

#: The most actions the approvals page lists.
APPROVALS_LISTED = 200


@never_cache
@require_GET
@staff_required
def approvals(request: HttpRequest) -> HttpResponse:
    waiting = list(Action.objects.awaiting_approval().order_by("-priority", "updated_at", "id")[: APPROVALS_LISTED + 1])
    context = console_context(
        request,
        view="approvals",
        title="Approvals",
        waiting=waiting[:APPROVALS_LISTED],
        more=len(waiting) > APPROVALS_LISTED,
        approve_allowed=request.user.has_perm(permissions.APPROVE_ACTION),
    )
    return TemplateResponse(request, "orchestration/approvals.html", context)


def _email_text(payload: dict) -> dict[str, str]:
    to = payload.get("to")
    return {
        "to": ", ".join(map(str, to)) if isinstance(to, list) else str(to or ""),
        "subject": str(payload.get("subject", "")),
        "body": str(payload.get("body", "")),
    }


def _edit_form(editable: tuple[str, ...], payload: dict) -> EditForm | None:
    if not editable:
        return None
    return EditForm(prefix="edit", fields=editable, initial={name: payload[name] for name in editable})


def _approval_page(
    request: HttpRequest, action: Action, *, bound: dict[str, forms.Form] | None = None, status: int = 200
) -> TemplateResponse:
    bound = bound or {}
    awaiting = action.status == ActionStatus.AWAITING_APPROVAL
    review = approval_review(action=action) if action.approval_artifact_ref else None
    editable = action_editable_fields(action=action) if awaiting else ()
    payload = action.payload if isinstance(action.payload, dict) else {}
    context = console_context(
        request,
        view="approvals",
        title=f"Approve action #{action.pk}",
        bound=bound,
        action=action,
        awaiting=awaiting,
        review=review,
        payload=json.dumps(action.payload, indent=2, ensure_ascii=False, sort_keys=True),
        approve_form=bound.get("approve") or ApproveForm(prefix="approve", initial={"sha256": action.approval_sha256}),
        reject_form=bound.get("reject") or RejectForm(prefix="reject"),
        edit_form=bound.get("edit") or _edit_form(editable, payload),
        # The post as it will read, counted as its network counts it ("187 / 500 characters").
        post_text=payload.get("message") if action.action_type == "POST_SOCIAL" else None,
        text_count=post_text_count(payload) if action.action_type == "POST_SOCIAL" else None,
        email_text=_email_text(payload) if action.action_type == "SEND_EMAIL" else None,
        approve_allowed=request.user.has_perm(permissions.APPROVE_ACTION),
    )
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
    if decision not in ("approve", "reject", "edit"):
        raise Http404(f"Unknown decision {decision!r}.")
    if not request.user.has_perm(permissions.APPROVE_ACTION):
        verb = "edit before approval" if decision == "edit" else decision
        return refuse(request, verb=verb, permission=permissions.APPROVE_ACTION, target=f"action #{action_id}")
    action = Action.objects.filter(pk=action_id).first()
    if action is None:
        raise Http404(f"No action #{action_id}.")
    if decision == "edit":
        return _approval_edit(request, action)
    form = (ApproveForm if decision == "approve" else RejectForm)(request.POST, prefix=decision)
    if form.is_valid():
        data = form.cleaned_data
        try:
            if decision == "approve":
                action = action_approve(
                    action_id=action.pk, sha256=data["sha256"], actor=actor_of(request), reason=data["reason"]
                )
            else:
                action = action_reject(action_id=action.pk, actor=actor_of(request), reason=data["reason"])
        except ControlChangeRejected as exc:
            form.add_error(None, str(exc))
        else:
            admin_log_write(
                user_id=user_id_of(request),
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


def _approval_edit(request: HttpRequest, action: Action) -> HttpResponse:
    """Edit the text of an action awaiting approval: its PROOF is re-rendered and the page shows the new hash."""
    editable = action_editable_fields(action=action) if action.status == ActionStatus.AWAITING_APPROVAL else ()
    form = EditForm(request.POST, prefix="edit", fields=editable)
    if form.is_valid():
        try:
            action = action_edit_before_approval(
                action_id=action.pk, changes=form.changes(), actor=actor_of(request), reason=form.cleaned_data["reason"]
            )
        except ControlChangeRejected as exc:
            form.add_error(None, str(exc))
        else:
            admin_log_write(
                user_id=user_id_of(request),
                objects=[action],
                message=f"edited before approval from the console (now sha256 {action.approval_sha256}); "
                f"reason: {form.cleaned_data['reason']}",
            )
            messages.success(
                request,
                f"Action #{action.pk} edited: its PROOF was rendered again (sha256 {action.approval_sha256}). "
                "Review it and approve it, or reject it.",
            )
            return redirect("orchestration:approval", action_id=action.pk)
    action.refresh_from_db()
    return _approval_page(request, action, bound={"edit": form})
