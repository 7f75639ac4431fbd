"""The admin of the action queue: a read-only list and detail page, the operator verbs on actions
as bulk actions (eligibility and permissions from the verb table), and artifact verification."""

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.filters import DateFieldListFilter
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from orchestration import permissions
from orchestration.adapters import action_types
from orchestration.adapters.store import artifact_exists, artifact_verify, ref_in_database
from orchestration.admin.records import InspectionAdmin, badge
from orchestration.exceptions import ControlChangeRejected, InvalidAction
from orchestration.models import MAX_PRIORITY, MIN_PRIORITY, Action, ActionStatus, ExecutionLog
from orchestration.services.operator import MAX_BULK_ACTIONS
from orchestration.services.operator_verb import ACTIONS, OperatorVerb
from orchestration.services.verbs import operator_denied, operator_run, verbs_where
from orchestration.web.forms import ReasonForm

ACTION_LOGS_SHOWN = 200


class ActionTypeFilter(admin.SimpleListFilter):
    """Types from the adapter registry: no SELECT DISTINCT over the whole table."""

    title = "action type"
    parameter_name = "action_type"

    def lookups(self, request: HttpRequest, model_admin: "admin.ModelAdmin[Any]") -> list[tuple[str, str]]:
        return [(name, name) for name in action_types()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Action]) -> QuerySet[Action]:
        return queryset.filter(action_type=self.value()) if self.value() else queryset


class BulkPriorityForm(ReasonForm):
    priority = forms.IntegerField(
        min_value=MIN_PRIORITY,
        max_value=MAX_PRIORITY,
        help_text=f"{MIN_PRIORITY} to {MAX_PRIORITY}; higher runs first.",
        error_messages={"required": "Give the new priority."},
    )


def bulk_form_class(verb: OperatorVerb) -> type[ReasonForm]:
    """The confirmation form of a bulk admin action: a reason, and what else the verb asks for."""
    return BulkPriorityForm if "priority" in verb.asks else ReasonForm


def admin_permission_codename(verb: OperatorVerb) -> str:
    return verb.permission.split(".", 1)[1]


def bulk_admin_action(
    verb: OperatorVerb,
) -> Callable[["ActionAdmin", HttpRequest, QuerySet[Action]], HttpResponse | None]:
    """The admin action of an operator verb on actions; Django offers it to who has its permission."""

    def run(modeladmin: "ActionAdmin", request: HttpRequest, queryset: QuerySet[Action]) -> HttpResponse | None:
        return modeladmin.bulk_run(request, queryset, verb)

    run.__name__ = verb.admin
    return admin.action(description=verb.description, permissions=[admin_permission_codename(verb)])(run)


#: The verbs on actions that the admin offers, by admin action name.
ADMIN_BULK_VERBS = {verb.admin: verb for verb in verbs_where(target=ACTIONS) if verb.admin}


class ActionAdmin(InspectionAdmin):
    list_display = (
        "id",
        "action_type",
        "status_badge",
        "priority",
        "attempts",
        "not_before",
        "updated_at",
        "last_error_short",
    )
    list_display_links = ("id", "action_type")
    list_filter = ("status", ActionTypeFilter, ("created_at", DateFieldListFilter))
    search_fields = ("=idempotency_key",)  # shows the search box; get_search_results decides what matches
    search_help_text = "The exact idempotency key (case-sensitive, the whole key), or an action id (42 or #42)."
    ordering = ("-id",)
    actions = [bulk_admin_action(verb) for verb in ADMIN_BULK_VERBS.values()]
    fieldsets = (
        (None, {"fields": ("id", "action_type", "status_badge", "idempotency_key")}),
        ("Scheduling", {"fields": ("attempts", "not_before", "claimed_by", "lease_token", "created_at", "updated_at")}),
        (
            "Flow control",
            {
                "fields": (
                    "priority",
                    "requires_approval",
                    "approval_artifact_ref",
                    "approval_sha256",
                    "approved_by",
                    "approved_at",
                    "approval_page",
                    "approval_notified_at",
                    "planned_payload",
                    "cancel_requested",
                    "deferred_note",
                    "rate_key",
                    "rate_counted_at",
                )
            },
        ),
        ("What the REAL run made", {"fields": ("remote_id", "remote_link")}),
        ("Payload", {"fields": ("payload_pretty",)}),
        ("Last error", {"fields": ("last_error",)}),
    )
    readonly_fields = tuple(flatten_fieldsets(fieldsets))  # every field shown is read-only

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Action], search_term: str
    ) -> tuple[QuerySet[Action], bool]:
        """Only what a unique index answers at millions of rows: the whole key, or the id.

        Django's ``=idempotency_key`` is iexact (``UPPER(key) = UPPER(term)``, no index), and a search
        for words of the last error reads every row: ~300 ms per search at 1M actions. To find
        failures, filter by status (DLQ, RETRY, …): the list shows each last error.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(idempotency_key=term)
        digits = term.removeprefix("#")
        if digits.isdigit() and len(digits) <= 18:  # fits a bigint
            match |= Q(pk=int(digits))
        return queryset.filter(match), False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Action) -> str:
        return badge(obj.status)

    @admin.display(description="last error")
    def last_error_short(self, obj: Action) -> str:
        return Truncator(obj.last_error).chars(80) or "—"

    @admin.display(description="remote URL")
    def remote_link(self, obj: Action) -> str:
        """A link only for http(s) URLs; anything else is shown as text, never as a link."""
        if obj.remote_href:
            return format_html(
                '<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>', obj.remote_href, obj.remote_url
            )
        return obj.remote_url or "—"

    @admin.display(description="review, edit or decide")
    def approval_page(self, obj: Action) -> str:
        """Approving and editing the text happen on the console's approval page (one form, one service)."""
        if obj.status != ActionStatus.AWAITING_APPROVAL:
            return "—"
        return format_html(
            '<a href="{}">the console\'s approval page</a>', reverse("orchestration:approval", args=[obj.pk])
        )

    @admin.display(description="payload")
    def payload_pretty(self, obj: Action) -> str:
        return format_html(
            '<pre class="aol-json">{}</pre>', json.dumps(obj.payload, indent=2, ensure_ascii=False, sort_keys=True)
        )

    # --- the bulk actions: the operator verbs on actions (services/operator.py) ----------------------

    def has_manage_dlq_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.MANAGE_DLQ)

    def has_retract_action_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.RETRACT_ACTION)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # Without the permission Django does not even offer the action and ignores a posted one;
        # record such an attempt all the same.
        verb = ADMIN_BULK_VERBS.get(request.POST.get("action", "")) if request.method == "POST" else None
        if verb is not None and not request.user.has_perm(verb.permission):
            operator_denied(
                verb=verb,
                actor=request.user.get_username(),
                reason=request.POST.get("reason", ""),
                target="admin action on actions",
            )
        return super().changelist_view(request, extra_context)

    def bulk_run(self, request: HttpRequest, queryset: QuerySet[Action], verb: OperatorVerb) -> HttpResponse | None:
        """Show how many rows will change and ask for a reason; on confirmation, run the verb.

        ``queryset`` is the selection, or everything matching the current filters when "select
        all" was used (then at most MAX_BULK_ACTIONS eligible rows, oldest first, per request).
        The service applies the bulk rule: the chosen actions it may not change are skipped.
        """
        select_across = request.POST.get("select_across") == "1"
        eligible = queryset.filter(status__in=verb.eligible).order_by("id")
        ids = list(eligible.values_list("pk", flat=True)[: MAX_BULK_ACTIONS + 1])
        more = len(ids) > MAX_BULK_ACTIONS
        ids = ids[:MAX_BULK_ACTIONS]
        skipped = {} if select_across else dict(queryset.exclude(pk__in=ids).order_by("id").values_list("pk", "status"))
        if not ids:
            self.message_user(request, f"{verb.label}: {verb.refusal(skipped)}", messages.WARNING)
            return None
        form = bulk_form_class(verb)(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            try:
                result = operator_run(
                    verb=verb,
                    actor=request.user.get_username(),
                    reason=form.cleaned_data["reason"],
                    user_id=request.user.pk,
                    via="an admin action",
                    action_ids=ids + list(skipped),
                    **{name: form.cleaned_data[name] for name in verb.asks},
                )
            except (ControlChangeRejected, InvalidAction) as exc:
                self.message_user(request, f"{verb.label}: {exc}", messages.ERROR)
                return None
            rest = f" More matched: run it again for the next {MAX_BULK_ACTIONS:,}." if more else ""
            level = messages.SUCCESS if result.changed else messages.INFO
            self.message_user(request, f"{verb.label}: {result.message}{rest}", level)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Confirm: {verb.label}",
            "opts": self.model._meta,
            "verb": verb,
            "action_name": verb.admin,
            "count": len(ids),
            "skipped": len(skipped),
            "more": more,
            "cap": MAX_BULK_ACTIONS,
            "first_ids": ids[:20],
            "form": form,
            "select_across": request.POST.get("select_across", "0"),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/orchestration/action/bulk_confirmation.html", context)

    # --- the detail page: execution logs and artifact verification -----------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/verify-artifact/<int:log_id>/",
                self.admin_site.admin_view(self.verify_artifact_view),
                name="orchestration_action_verify_artifact",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = extra_context or {}
        if object_id and str(object_id).isdigit():
            logs = list(ExecutionLog.objects.filter(action_id=int(object_id)).order_by("id")[:ACTION_LOGS_SHOWN])
            extra_context["action_logs"] = logs
            extra_context["action_logs_capped"] = len(logs) == ACTION_LOGS_SHOWN
            extra_context["artifact_logs"] = [log for log in logs if log.artifact_ref]
        return super().change_view(request, object_id, form_url, extra_context)

    def verify_artifact_view(self, request: HttpRequest, object_id: str, log_id: int) -> HttpResponse:
        """Re-hash an artifact and say whether it still matches the SHA-256 in its log row (reads only)."""
        action = self.get_object(request, unquote(object_id))
        if action is None:
            raise Http404("No such action.")
        if not self.has_view_permission(request, action):
            raise PermissionDenied
        log = get_object_or_404(ExecutionLog, pk=log_id, action_id=action.pk)
        back = reverse("admin:orchestration_action_change", args=[action.pk])
        if not log.artifact_ref or not log.artifact_sha256:
            self.message_user(request, f"Log #{log.pk} has no artifact to verify.", messages.WARNING)
            return HttpResponseRedirect(back)
        exists = artifact_exists(ref=log.artifact_ref)
        where = "the database (aol_artifacts)" if ref_in_database(log.artifact_ref) else "AOL_ARTIFACTS_DIR"
        if artifact_verify(ref=log.artifact_ref, sha256=log.artifact_sha256):
            self.message_user(
                request,
                f"Artifact {log.artifact_ref} verified: its SHA-256 still matches the logged "
                f"{log.artifact_sha256[:16]}….",
                messages.SUCCESS,
            )
        elif not exists:
            self.message_user(request, f"Artifact {log.artifact_ref} is MISSING from {where}.", messages.ERROR)
        else:
            self.message_user(
                request,
                f"Artifact {log.artifact_ref} does NOT match: its bytes changed since log #{log.pk} recorded "
                f"{log.artifact_sha256[:16]}….",
                messages.ERROR,
            )
        return HttpResponseRedirect(back)
