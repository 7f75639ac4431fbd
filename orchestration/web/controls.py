"""The console's POST handlers: every operator verb through one view driven by the verb table
(``services/operator.py``), and the enqueue form."""

from django.contrib import messages
from django.contrib.admin.models import ADDITION
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from orchestration import permissions
from orchestration.exceptions import ControlChangeRejected, InvalidAction, InvalidPriority
from orchestration.services.audit import admin_log_write
from orchestration.services.enqueue import action_enqueue_by_operator
from orchestration.services.operator_verb import (
    ACTION_TYPE,
    CONSOLE_ACTIONS,
    CONSOLE_ATTENTION,
    CONSOLE_FLAGS,
    CONSOLE_TYPES,
)
from orchestration.services.verbs import operator_denied, operator_run, verb_for_console
from orchestration.web.access import actor_of, denied, posted_reason, refuse, staff_required, user_id_of
from orchestration.web.forms import EnqueueForm, verb_form
from orchestration.web.layout import return_path
from orchestration.web.pages import page_with_errors

#: Where each console group's controls return when the form does not say (``return_to``).
GROUP_URLS = {
    CONSOLE_FLAGS: "orchestration:status",
    CONSOLE_ATTENTION: "orchestration:attention",
    CONSOLE_TYPES: "orchestration:schedules",
    CONSOLE_ACTIONS: "orchestration:actions",
}


@require_POST
@staff_required
def operate(request: HttpRequest, group: str, slug: str) -> HttpResponse:
    """Every operator control of the console; the verb table says what each needs and does."""
    verb = verb_for_console(group=group, slug=slug)
    if verb is None:
        raise Http404(f"Unknown control {slug!r}.")
    if not request.user.has_perm(verb.permission):
        target = f"action type {request.POST.get('types-action_type', '?')}" if verb.target == ACTION_TYPE else ""
        operator_denied(verb=verb, actor=actor_of(request), reason=posted_reason(request), target=target[:255])
        return denied(
            request, f"You do not have the permission to {verb.audit_verb} ({verb.permission}). Nothing was changed."
        )
    form = verb_form(verb, request.POST)
    if form.is_valid():
        try:
            result = operator_run(
                verb=verb,
                actor=actor_of(request),
                reason=form.cleaned_data["reason"],
                user_id=request.user.pk,
                via="the console",
                **form.operator_params(),
            )
        except InvalidPriority as exc:
            form.add_error("priority", str(exc))
        except ControlChangeRejected as exc:
            form.add_error(form.error_field, str(exc))
        else:
            (messages.success if result.changed else messages.info)(request, f"{verb.label}: {result.message}")
            return redirect(return_path(request, default=reverse(GROUP_URLS[group])))
    # The POST keys carry the form's prefix; render the page it came from with the errors beside the control.
    return page_with_errors(request, group=group, form=form, posted_verb=verb.name)


@require_POST
@staff_required
def enqueue(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(permissions.ENQUEUE_ACTION):
        return refuse(request, verb="enqueue", permission=permissions.ENQUEUE_ACTION, target="action queue")
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
                actor=actor_of(request),
                reason=data["reason"],
            )
        except InvalidAction as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        except ControlChangeRejected as exc:
            form.add_error("reason", str(exc))
        else:
            url = reverse("orchestration:action", args=[action.pk])
            if created:
                admin_log_write(
                    user_id=user_id_of(request),
                    objects=[action],
                    flag=ADDITION,
                    message=f"enqueued from the console; reason: {data['reason']}",
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
            return redirect(return_path(request, default=reverse("orchestration:actions")))
    return page_with_errors(request, group="enqueue", form=form)
