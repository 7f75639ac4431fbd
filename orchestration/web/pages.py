"""The console's views besides the Overview: Actions, one action, Attention, Calendar, Schedules and limits, Audit.

Thin like the Overview: a selector (services/console.py, services/status.py) reads what the view
shows; controls post to the verb table's one view (web/controls.py), which comes back here, with
the form's errors, through ``page_with_errors``.
"""

import json
from datetime import timedelta
from typing import Any, cast

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from orchestration import permissions
from orchestration.adapters import action_types
from orchestration.models import ActionStatus, AuditOutcome
from orchestration.services.approval import approval_review
from orchestration.services.console import (
    CALENDAR_DAYS,
    console_action_detail,
    console_actions_page,
    console_attention_page,
    console_audit_page,
    console_calendar,
)
from orchestration.services.operator import MAX_BULK_ACTIONS
from orchestration.services.operator_verb import CONSOLE_ACTIONS, CONSOLE_ATTENTION, CONSOLE_FLAGS, CONSOLE_TYPES
from orchestration.services.status import action_status_counts, flow_snapshot
from orchestration.web.access import staff_required
from orchestration.web.forms import FORM_PREFIXES, EnqueueForm
from orchestration.web.layout import console_context
from orchestration.web.status import group_context, status_page, verb_context


class ActionFilterForm(forms.Form):
    """The Actions view's filters (a GET form)."""

    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *ActionStatus.choices])
    action_type = forms.ChoiceField(required=False, label="Type", choices=[])
    key = forms.CharField(
        required=False,
        max_length=255,
        label="Key or id",
        widget=forms.TextInput(attrs={"placeholder": "exact idempotency key, or #id", "size": 30}),
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = [("", "Any type"), *((name, name) for name in action_types())]
        cast(forms.ChoiceField, self.fields["action_type"]).choices = names


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=255, widget=forms.TextInput(attrs={"placeholder": "username"}))
    outcome = forms.ChoiceField(required=False, choices=[("", "Any outcome"), *AuditOutcome.choices])
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


class BeforeForm(forms.Form):
    before = forms.IntegerField(required=False, min_value=1)


class CalendarForm(forms.Form):
    start = forms.DateField(required=False, input_formats=["%Y-%m-%d"], widget=forms.DateInput(attrs={"type": "date"}))


def _query_without_before(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("before", None)
    return query.urlencode()


# --- Actions ----------------------------------------------------------------------------------------------


def actions_page(request: HttpRequest, *, bound: dict[str, forms.Form] | None = None) -> TemplateResponse:
    bound = bound or {}
    user = request.user
    filters = ActionFilterForm(request.GET or None, prefix=None)
    page = None
    if not request.GET or filters.is_valid():
        data = filters.cleaned_data if request.GET else {}
        page = console_actions_page(
            status=data.get("status", ""),
            action_type=data.get("action_type", ""),
            key=data.get("key", ""),
            before=data.get("before"),
        )
    counts, estimated = action_status_counts()
    context = console_context(
        request,
        view="actions",
        title="Actions",
        bound={**bound, **({"filter": filters} if filters.is_bound and filters.errors else {})},
        filters=filters,
        page=page,
        query=_query_without_before(request),
        status_counts=[
            {"status": status, "count": counts[status], "estimated": status in estimated}
            for status in ActionStatus.values
        ],
        **group_context(user, CONSOLE_ACTIONS, "queue", bound),
        enqueue_form=bound.get("enqueue") or EnqueueForm(prefix="enqueue"),
        enqueue_allowed=user.has_perm(permissions.ENQUEUE_ACTION),
        adapters=_adapters(),
    )
    return TemplateResponse(request, "orchestration/actions.html", context)


def _adapters() -> list[dict[str, str]]:
    from orchestration.adapters import adapters_all

    return [
        {"action_type": name, "description": adapter.description} for name, adapter in sorted(adapters_all().items())
    ]


@never_cache
@require_GET
@staff_required
def actions(request: HttpRequest) -> HttpResponse:
    return actions_page(request)


def action_page(
    request: HttpRequest,
    action_id: int,
    *,
    bound: dict[str, forms.Form] | None = None,
    posted_verb: str = "",
) -> TemplateResponse:
    bound = bound or {}
    detail = console_action_detail(action_id=action_id)
    if detail is None:
        raise Http404(f"No action #{action_id}.")
    action = detail.action
    user = request.user
    controls = []
    for verb in detail.verbs:
        prefix = FORM_PREFIXES[verb.console]
        form = bound.get(prefix) if posted_verb == verb.name else None
        controls.append({**verb_context(user, verb), "prefix": prefix, "group": verb.console, "form": form})
    review = (
        approval_review(action=action)
        if action.approval_artifact_ref and action.status == ActionStatus.AWAITING_APPROVAL
        else None
    )
    context = console_context(
        request,
        view="actions",
        title=f"Action #{action.pk}",
        bound=bound,
        action=action,
        detail=detail,
        controls=controls,
        review=review,
        payload=json.dumps(action.payload, indent=2, ensure_ascii=False, sort_keys=True),
    )
    # The error summary links to the form of the verb that was posted.
    for entry in context["form_errors"]:
        entry["anchor"] = f"verb-{posted_verb}"
    return TemplateResponse(request, "orchestration/action.html", context, status=200)


@never_cache
@require_GET
@staff_required
def action(request: HttpRequest, action_id: int) -> HttpResponse:
    return action_page(request, action_id)


# --- Attention ----------------------------------------------------------------------------------------


def attention_page(request: HttpRequest, *, bound: dict[str, forms.Form] | None = None) -> TemplateResponse:
    bound = bound or {}
    paging = BeforeForm(request.GET)
    before = paging.cleaned_data["before"] if paging.is_valid() else None
    counts, _ = action_status_counts()
    context = console_context(
        request,
        view="attention",
        title="Needs attention: DLQ and NEEDS_REVIEW",
        bound=bound,
        page=console_attention_page(before=before),
        dlq_count=counts[ActionStatus.DLQ],
        review_count=counts[ActionStatus.NEEDS_REVIEW],
        max_bulk=MAX_BULK_ACTIONS,
        query="",
        **group_context(request.user, CONSOLE_ATTENTION, "dlq", bound),
    )
    return TemplateResponse(request, "orchestration/attention.html", context)


@never_cache
@require_GET
@staff_required
def attention(request: HttpRequest) -> HttpResponse:
    return attention_page(request)


# --- Calendar -----------------------------------------------------------------------------------------


@never_cache
@require_GET
@staff_required
def calendar(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    form = CalendarForm(request.GET)
    start = form.cleaned_data["start"] if form.is_valid() and form.cleaned_data["start"] else now.date()
    week = console_calendar(start=start, now=now, days=CALENDAR_DAYS)
    context = console_context(
        request,
        view="calendar",
        title="Calendar",
        bound={"start": form} if form.errors else {},
        calendar=week,
        form=form,
        today=now.date(),
        previous=(start - timedelta(days=CALENDAR_DAYS)).isoformat(),
        next=(start + timedelta(days=CALENDAR_DAYS)).isoformat(),
        end=start + timedelta(days=CALENDAR_DAYS - 1),
        in_past=start + timedelta(days=CALENDAR_DAYS) <= now.date(),
    )
    return TemplateResponse(request, "orchestration/calendar.html", context)


# --- Schedules and rate limits -------------------------------------------------------------------------


def schedules_page(request: HttpRequest, *, bound: dict[str, forms.Form] | None = None) -> TemplateResponse:
    bound = bound or {}
    flow = flow_snapshot()
    paused = [pause["action_type"] for pause in flow["paused_types"]]
    context = console_context(
        request,
        view="schedules",
        title="Schedules and rate limits",
        bound=bound,
        s=flow,
        **group_context(request.user, CONSOLE_TYPES, "type_pause", bound, paused=paused),
        action_type_rows=[
            {
                "action_type": name,
                "pause": next((p for p in flow["paused_types"] if p["action_type"] == name), None),
                "approval": name in flow["approval_required_types"],
                "settings": next((t for t in flow["type_settings"] if t["action_type"] == name), None),
            }
            for name in sorted({t["action_type"] for t in flow["type_settings"]} | set(paused))
        ],
    )
    return TemplateResponse(request, "orchestration/schedules.html", context)


@never_cache
@require_GET
@staff_required
def schedules(request: HttpRequest) -> HttpResponse:
    return schedules_page(request)


# --- Audit ---------------------------------------------------------------------------------------------


@never_cache
@require_GET
@staff_required
def audit(request: HttpRequest) -> HttpResponse:
    filters = AuditFilterForm(request.GET or None)
    page = None
    if not request.GET or filters.is_valid():
        data = filters.cleaned_data if request.GET else {}
        page = console_audit_page(
            actor=data.get("actor", ""), outcome=data.get("outcome", ""), before=data.get("before")
        )
    context = console_context(
        request,
        view="audit",
        title="Audit trail",
        bound={"filter": filters} if filters.is_bound and filters.errors else {},
        filters=filters,
        page=page,
        query=_query_without_before(request),
    )
    return TemplateResponse(request, "orchestration/audit.html", context)


# --- Coming back from a control ---------------------------------------------------------------------------

#: The page a console group's form is on, when the form does not say where it was posted from.
GROUP_PAGES = {
    CONSOLE_FLAGS: status_page,
    CONSOLE_ATTENTION: attention_page,
    CONSOLE_TYPES: schedules_page,
    CONSOLE_ACTIONS: actions_page,
    "enqueue": actions_page,
}
#: The pages that show a console form, by URL name.
NAMED_PAGES = {
    "status": status_page,
    "actions": actions_page,
    "attention": attention_page,
    "schedules": schedules_page,
}


def page_with_errors(request: HttpRequest, *, group: str, form: forms.Form, posted_verb: str = "") -> TemplateResponse:
    """The page the form was posted from (``return_to``), rendered again with the form's errors beside it."""
    bound = {form.prefix or "": form}
    try:
        match = resolve(request.POST.get("return_to", "").split("?", 1)[0])
    except Resolver404:
        match = None
    if match is not None and match.namespace == "orchestration":
        if match.url_name == "action":
            return action_page(request, int(match.kwargs["action_id"]), bound=bound, posted_verb=posted_verb)
        if match.url_name in NAMED_PAGES:
            return NAMED_PAGES[match.url_name](request, bound=bound)
    return GROUP_PAGES.get(group, status_page)(request, bound=bound)
