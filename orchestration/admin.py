"""Admin pages for the AOL tables.

Queue, ledger, lease, log and audit pages are inspection tools: read-only, with filters that use
indexes and a paginator that never counts a whole large table. Changes go through the services
(the same ones the status view uses), so every one is logged and audited.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.filters import DateFieldListFilter
from django.contrib.admin.options import ShowFacets
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator

from orchestration import permissions
from orchestration.adapters import action_types
from orchestration.adapters.artifacts import artifact_path, artifact_verify
from orchestration.dbclock import DbNow
from orchestration.exceptions import ControlChangeRejected, InvalidAction
from orchestration.forms import REAL_CONFIRMATION, ReasonForm, reason_field
from orchestration.models import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    Action,
    ActionTypePause,
    AuditEntry,
    AuditOutcome,
    ControlFlags,
    ExecutionLog,
    Lease,
    RateLimit,
    Schedule,
    TickLedger,
)
from orchestration.services import control
from orchestration.services.audit import audit_write
from orchestration.services.lease import lease_health_of
from orchestration.services.operator import MAX_BULK_ACTIONS
from orchestration.services.operator_verb import ACTIONS, CONFIRM_TICK, CONFIRM_TYPE_REAL, FLAGS, OperatorVerb
from orchestration.services.rate_limits import rate_limit_validate
from orchestration.services.schedules import schedule_clean
from orchestration.services.status import table_rows_estimate
from orchestration.services.verbs import flag_verb, operator_denied, operator_run, verbs_where

#: Changelists count at most this many rows (then say "more than …"), so a page load never
#: counts a table of millions; pages stop there too, so no page needs a deep OFFSET.
COUNT_CAP = 10_000
ACTION_LOGS_SHOWN = 200


class EstimatedCountPaginator(Paginator):
    """Never counts a whole large table, and never claims a total it did not count.

    Unfiltered on PostgreSQL, above COUNT_CAP rows: ``estimate`` is the planner's row estimate
    (shown as "about N"). Otherwise, filtered or searched lists and SQLite count at most
    COUNT_CAP + 1 matching rows, without ORDER BY so any index may answer (``capped`` beyond it:
    "more than N"). Either way ``count`` is at most COUNT_CAP, so the page links end there.
    """

    capped = False
    estimate: int | None = None

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if not hasattr(object_list, "query"):
            return len(object_list)
        if not object_list.query.where:
            estimate = table_rows_estimate(model=object_list.model)
            if estimate is not None and estimate > COUNT_CAP:
                self.estimate, self.capped = estimate, True
                return COUNT_CAP
        counted = object_list.order_by()[: COUNT_CAP + 1].count()
        self.capped = counted > COUNT_CAP
        return min(counted, COUNT_CAP)


def badge(value: str) -> str:
    return format_html('<span class="badge badge-{}">{}</span>', value, value)


class InspectionAdmin(admin.ModelAdmin):
    """Append-only records: viewable, never edited or deleted through the admin."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    list_per_page = 100

    class Media:
        css = {"all": ["orchestration/console.css"]}

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- Actions --------------------------------------------------------------------------------------


class ActionTypeFilter(admin.SimpleListFilter):
    """Types from the adapter registry: no SELECT DISTINCT over the whole table."""

    title = "action type"
    parameter_name = "action_type"

    def lookups(self, request, model_admin):
        return [(name, name) for name in action_types()]

    def queryset(self, request, queryset):
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


def bulk_admin_action(verb: OperatorVerb):
    """The admin action of an operator verb on actions; Django offers it to who has its permission."""

    def run(modeladmin: "ActionAdmin", request, queryset):
        return modeladmin.bulk_run(request, queryset, verb)

    run.__name__ = verb.admin
    return admin.action(description=verb.description, permissions=[admin_permission_codename(verb)])(run)


#: The verbs on actions that the admin offers, by admin action name.
ADMIN_BULK_VERBS = {verb.admin: verb for verb in verbs_where(target=ACTIONS) if verb.admin}


@admin.register(Action)
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
                    "cancel_requested",
                    "deferred_note",
                    "rate_key",
                    "rate_counted_at",
                )
            },
        ),
        ("Payload", {"fields": ("payload_pretty",)}),
        ("Last error", {"fields": ("last_error",)}),
    )
    readonly_fields = (
        "id",
        "action_type",
        "status_badge",
        "idempotency_key",
        "attempts",
        "not_before",
        "claimed_by",
        "lease_token",
        "created_at",
        "updated_at",
        "payload_pretty",
        "last_error",
        "priority",
        "requires_approval",
        "approval_artifact_ref",
        "approval_sha256",
        "approved_by",
        "approved_at",
        "cancel_requested",
        "deferred_note",
        "rate_key",
        "rate_counted_at",
    )

    def get_search_results(self, request, queryset, search_term):
        """Only what a unique index answers at millions of rows: the whole key, or the id.

        Django's ``=idempotency_key`` is iexact (``UPPER(key) = UPPER(term)``, no index) and the
        former words-from-the-last-error search read every row; together ~300 ms per search at
        1M actions. To find failures, filter by status (DLQ, RETRY, …): the list shows each last error.
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

    @admin.display(description="payload")
    def payload_pretty(self, obj: Action) -> str:
        return format_html(
            '<pre class="aol-json">{}</pre>', json.dumps(obj.payload, indent=2, ensure_ascii=False, sort_keys=True)
        )

    # --- the bulk actions: the operator verbs on actions (services/operator.py) ----------------------

    def has_manage_dlq_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.MANAGE_DLQ)

    def changelist_view(self, request, extra_context=None):
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

    def bulk_run(self, request, queryset, verb: OperatorVerb):
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

    def get_urls(self):
        return [
            path(
                "<path:object_id>/verify-artifact/<int:log_id>/",
                self.admin_site.admin_view(self.verify_artifact_view),
                name="orchestration_action_verify_artifact",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        if object_id and str(object_id).isdigit():
            logs = list(ExecutionLog.objects.filter(action_id=int(object_id)).order_by("id")[:ACTION_LOGS_SHOWN])
            extra_context["action_logs"] = logs
            extra_context["action_logs_capped"] = len(logs) == ACTION_LOGS_SHOWN
            extra_context["artifact_logs"] = [log for log in logs if log.artifact_ref]
        return super().change_view(request, object_id, form_url, extra_context)

    def verify_artifact_view(self, request, object_id: str, log_id: int):
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
        try:
            exists = artifact_path(log.artifact_ref).is_file()
        except ValueError:
            exists = False
        if artifact_verify(ref=log.artifact_ref, sha256=log.artifact_sha256):
            self.message_user(
                request,
                f"Artifact {log.artifact_ref} verified: its SHA-256 still matches the logged "
                f"{log.artifact_sha256[:16]}….",
                messages.SUCCESS,
            )
        elif not exists:
            self.message_user(
                request, f"Artifact {log.artifact_ref} is MISSING from AOL_ARTIFACTS_DIR.", messages.ERROR
            )
        else:
            self.message_user(
                request,
                f"Artifact {log.artifact_ref} does NOT match: the file changed since log #{log.pk} recorded "
                f"{log.artifact_sha256[:16]}….",
                messages.ERROR,
            )
        return HttpResponseRedirect(back)


# --- Control flags: a singleton edited through the services -------------------------------------------


#: The control flags the admin edits; each change runs the verb that sets the flag to its new value.
FLAG_FIELDS = tuple(dict.fromkeys(verb.flag[0] for verb in verbs_where(target=FLAGS) if verb.flag))


class ControlFlagsForm(forms.ModelForm):
    reason = reason_field()
    confirm_kill = forms.BooleanField(required=False, label="Yes, kill the daemon (when ticking “killed”)")
    confirm_real = forms.CharField(
        required=False, max_length=20, label=f"Type {REAL_CONFIRMATION} to switch to REAL (when unticking PROOF)"
    )

    class Meta:
        model = ControlFlags
        fields = FLAG_FIELDS

    def clean(self):
        cleaned = super().clean()
        for name in FLAG_FIELDS:
            if name not in self.changed_data:
                continue
            verb = flag_verb(flag=name, value=bool(cleaned.get(name)))
            if verb.confirm == CONFIRM_TICK and not cleaned.get("confirm_kill"):
                self.add_error("confirm_kill", "Tick to confirm: kill makes every daemon release its lease and exit.")
            if verb.confirm == CONFIRM_TYPE_REAL and (cleaned.get("confirm_real") or "").strip() != REAL_CONFIRMATION:
                self.add_error(
                    "confirm_real", f"Type {REAL_CONFIRMATION} to confirm: in REAL mode actions act for real."
                )
        return cleaned


def _flag_change_allowed(user, flags: ControlFlags | None, name: str) -> bool:
    """May ``user`` flip flag ``name`` from its current value (the verb doing it needs a permission)?"""
    current = getattr(flags or control.control_flags_get(), name)
    return user.has_perm(flag_verb(flag=name, value=not current).permission)


@admin.register(ControlFlags)
class ControlFlagsAdmin(admin.ModelAdmin):
    form = ControlFlagsForm
    list_display = ("paused", "killed", "proof_mode", "updated_at", "updated_by")
    fieldsets = (
        ("Flags", {"fields": ("paused", "killed", "proof_mode")}),
        ("Why (required, recorded in the audit trail)", {"fields": ("reason", "confirm_kill", "confirm_real")}),
        ("Last change", {"fields": ("updated_at", "updated_by")}),
    )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return any(request.user.has_perm(verb.permission) for verb in verbs_where(target=FLAGS))

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or self.has_change_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        locked = [name for name in FLAG_FIELDS if not _flag_change_allowed(request.user, obj, name)]
        return [*locked, "updated_at", "updated_by"]

    def get_fieldsets(self, request, obj=None):
        if not self.has_change_permission(request, obj):
            return (self.fieldsets[0], self.fieldsets[2])
        return self.fieldsets

    def changelist_view(self, request, extra_context=None):
        flags = control.control_flags_get()
        return redirect("admin:orchestration_controlflags_change", flags.pk)

    def save_model(self, request, obj, form, change):
        """Run the verb of each changed flag (execution log + audit); never obj.save()."""
        actor, reason = request.user.get_username(), form.cleaned_data["reason"]
        for name in form.changed_data:
            if name not in FLAG_FIELDS:
                continue
            verb = flag_verb(flag=name, value=form.cleaned_data[name])
            if not request.user.has_perm(verb.permission):  # the field is read-only for them; belt and braces
                operator_denied(verb=verb, actor=actor, reason=reason)
                continue
            operator_run(verb=verb, actor=actor, reason=reason)

    def construct_change_message(self, request, form, formsets, add=False):
        changed = [name for name in form.changed_data if name in FLAG_FIELDS]
        values = ", ".join(f"{name}={form.cleaned_data[name]}" for name in changed) or "nothing"
        return f"Changed {values} through the control services; reason: {form.cleaned_data.get('reason', '')}"


# --- Lease, ledger, logs, audit: read-only ------------------------------------------------------------


@admin.register(Lease)
class LeaseAdmin(InspectionAdmin):
    list_display = ("holder", "state_badge", "token", "acquired_at", "renewed_at", "expires_at")
    readonly_fields = ("owner", "token", "acquired_at", "renewed_at", "expires_at")

    @admin.display(description="holder")
    def holder(self, obj: Lease) -> str:
        return obj.owner or "— (free)"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(db_now=DbNow())  # the badge's clock: the database's

    @admin.display(description="state")
    def state_badge(self, obj: Lease) -> str:
        state = lease_health_of(obj).state
        return format_html('<span class="light light-{}" title="{}"></span>{}', state, state, state)


@admin.register(TickLedger)
class TickLedgerAdmin(InspectionAdmin):
    list_display = ("id", "started_at", "status_badge", "duration", "actions_attempted", "actions_succeeded", "owner")
    list_filter = ("status", ("started_at", DateFieldListFilter))
    search_fields = ("=owner",)
    search_help_text = "Exact owner (hostname:pid:<8 hex>)."
    ordering = ("-started_at", "-id")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: TickLedger) -> str:
        return badge(obj.status)

    @admin.display(description="duration")
    def duration(self, obj: TickLedger) -> str:
        return f"{obj.duration_seconds:.3f} s"


@admin.register(ExecutionLog)
class ExecutionLogAdmin(InspectionAdmin):
    list_display = ("id", "ts", "level_badge", "action_link", "actor", "message_short", "artifact_ref")
    list_filter = ("level", ("ts", DateFieldListFilter))
    search_fields = ("message", "=actor", "=artifact_sha256")
    search_help_text = "An action id (e.g. 42 or #42), an exact actor or SHA-256, or words from the message."
    ordering = ("-id",)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lstrip("#")
        if term.isdigit():
            return queryset.filter(Q(action_id=int(term)) | Q(message__icontains=term)), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="level", ordering="level")
    def level_badge(self, obj: ExecutionLog) -> str:
        return badge(obj.level)

    @admin.display(description="action")
    def action_link(self, obj: ExecutionLog) -> str:
        if not obj.action_id:
            return "—"
        return format_html(
            '<a href="{}">#{}</a>', reverse("admin:orchestration_action_change", args=[obj.action_id]), obj.action_id
        )

    @admin.display(description="message")
    def message_short(self, obj: ExecutionLog) -> str:
        return Truncator(obj.message).chars(120)


@admin.register(AuditEntry)
class AuditEntryAdmin(InspectionAdmin):
    list_display = ("ts", "actor", "verb", "outcome_badge", "target", "change", "reason")
    list_filter = ("outcome", "verb", ("ts", DateFieldListFilter))
    search_fields = ("=actor", "reason", "target")
    ordering = ("-id",)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: AuditEntry) -> str:
        return badge(obj.outcome)

    @admin.display(description="before → after")
    def change(self, obj: AuditEntry) -> str:
        def compact(value: dict) -> str:
            return ", ".join(f"{k}={v}" for k, v in value.items() if k != "ids") or "—"

        return f"{compact(obj.before)} → {compact(obj.after)}"


# --- Schedules (issue 7): managed here, every change audited ---------------------------------------------


class ScheduleForm(forms.ModelForm):
    """The service's validation (``schedule_clean``) names every bad field; a reason is asked for."""

    action_type = forms.ChoiceField(choices=())
    reason = reason_field()

    class Meta:
        model = Schedule
        fields = ("name", "enabled", "action_type", "payload_template", "cron", "interval_seconds", "catch_up")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        known = action_types()
        current = self.instance.action_type if self.instance.pk else None
        choices = [(name, name) for name in known]
        if current and current not in known:  # an adapter was removed: show it, clean() will refuse it
            choices.insert(0, (current, f"{current} (unknown)"))
        self.fields["action_type"].choices = choices

    def _post_clean(self):
        super()._post_clean()
        try:
            schedule_clean(schedule=self.instance)
        except ValidationError as exc:
            self._update_errors(exc)


class RateLimitForm(forms.ModelForm):
    """The service's validation (``rate_limit_validate``) names every bad field."""

    class Meta:
        model = RateLimit
        fields = ("action_type", "key_fields", "max_count", "period_seconds", "enabled")

    def _post_clean(self):
        super()._post_clean()
        try:
            rate_limit_validate(limit=self.instance)
        except ValidationError as exc:
            self._update_errors(exc)


#: What the audit trail records about a schedule (before → after).
SCHEDULE_AUDIT_FIELDS = ("name", "enabled", "action_type", "payload_template", "cron", "interval_seconds", "catch_up")


def schedule_audit_values(schedule: Schedule) -> dict:
    return {name: getattr(schedule, name) for name in SCHEDULE_AUDIT_FIELDS}


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ("name", "enabled", "action_type", "rule", "catch_up", "last_period_at", "next_run_at")
    list_filter = ("enabled", "action_type")
    search_fields = ("name",)
    ordering = ("name",)
    readonly_fields = ("last_period_at", "next_run_at", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "enabled", "action_type", "payload_template")}),
        ("When (cron expression in UTC, or an interval)", {"fields": ("cron", "interval_seconds", "catch_up")}),
        ("Why (required, recorded in the audit trail)", {"fields": ("reason",)}),
        ("Firing", {"fields": ("last_period_at", "next_run_at", "created_at", "updated_at")}),
    )

    @admin.display(description="rule")
    def rule(self, obj: Schedule) -> str:
        return obj.rule

    def save_model(self, request, obj, form, change):
        before = {}
        if change:
            before = schedule_audit_values(Schedule.objects.get(pk=obj.pk))
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            after = schedule_audit_values(obj)
            audit_write(
                actor=request.user.get_username(),
                verb="change schedule" if change else "add schedule",
                outcome=AuditOutcome.DONE if (after != before or not change) else AuditOutcome.NO_CHANGE,
                reason=form.cleaned_data["reason"],
                target=f"schedule #{obj.pk} {obj.name}",
                before={k: v for k, v in before.items() if after.get(k) != v},
                after={k: v for k, v in after.items() if before.get(k) != v},
            )

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit_write(
                actor=request.user.get_username(),
                verb="delete schedule",
                outcome=AuditOutcome.DONE,
                reason="deleted in the admin",
                target=f"schedule #{obj.pk} {obj.name}",
                before=schedule_audit_values(obj),
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for schedule in queryset:
            self.delete_model(request, schedule)


# --- Flow control: rate limits (edited here, audited) and paused types (read-only) ----------------------


@admin.register(RateLimit)
class RateLimitAdmin(admin.ModelAdmin):
    form = RateLimitForm
    """Operators edit rate limits here; every save and delete is audited. Validation (known type,
    positive numbers, key fields the type's payload has, one key per type) lives on the model."""

    list_display = ("action_type", "key_fields", "max_count", "period_seconds", "enabled", "updated_at", "updated_by")
    list_filter = ("action_type", "enabled")
    readonly_fields = ("updated_at", "updated_by")
    fields = ("action_type", "key_fields", "max_count", "period_seconds", "enabled", "updated_at", "updated_by")

    class Media:
        css = {"all": ["orchestration/console.css"]}

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "action_type":
            return forms.ChoiceField(
                choices=[("", "---------"), *((name, name) for name in action_types())],
                help_text="The rows of a type replace its AOL_RATE_LIMITS defaults.",
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @staticmethod
    def _values(obj: RateLimit) -> dict:
        return {
            "action_type": obj.action_type,
            "key_fields": obj.key_fields,
            "max_count": obj.max_count,
            "period_seconds": obj.period_seconds,
            "enabled": obj.enabled,
        }

    def save_model(self, request, obj, form, change):
        before = self._values(RateLimit.objects.get(pk=obj.pk)) if change else {}
        obj.updated_by = request.user.get_username()[:255]
        super().save_model(request, obj, form, change)
        audit_write(
            actor=request.user.get_username(),
            verb="change rate limit" if change else "add rate limit",
            outcome=AuditOutcome.DONE,
            target=f"rate limit #{obj.pk} ({obj.action_type})",
            before=before,
            after=self._values(obj),
        )

    def delete_model(self, request, obj):
        before, pk = self._values(obj), obj.pk
        super().delete_model(request, obj)
        audit_write(
            actor=request.user.get_username(),
            verb="delete rate limit",
            outcome=AuditOutcome.DONE,
            target=f"rate limit #{pk} ({before['action_type']})",
            before=before,
        )

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(ActionTypePause)
class ActionTypePauseAdmin(InspectionAdmin):
    """Paused action types: pause and resume them on the status view or with ``aol_control pause --type``."""

    list_display = ("action_type", "paused_by", "paused_at", "reason")
    ordering = ("paused_at",)
