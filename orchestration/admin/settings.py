"""Admin pages for what operators configure: the control flags, schedules and rate limits.

Every change goes through a service, which writes its audit row in the same transaction.
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db.models import Field, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from orchestration.adapters import action_types
from orchestration.models import ControlFlags, RateLimit, Schedule
from orchestration.services import control
from orchestration.services.operator_verb import CONFIRM_TICK, CONFIRM_TYPE_REAL, FLAGS
from orchestration.services.rate_limits import rate_limit_delete, rate_limit_save, rate_limit_validate
from orchestration.services.schedules import schedule_clean, schedule_delete, schedule_save
from orchestration.services.verbs import flag_verb, operator_denied, operator_run, verbs_where
from orchestration.web.forms import REAL_CONFIRMATION, reason_field

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec
    from django.forms.formsets import BaseFormSet
    from django.utils.datastructures import _ListOrTuple

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

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
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


def _flag_change_allowed(user: User | AnonymousUser, flags: ControlFlags | None, name: str) -> bool:
    """May ``user`` flip flag ``name`` from its current value (the verb doing it needs a permission)?"""
    current = getattr(flags or control.control_flags_get(), name)
    return user.has_perm(flag_verb(flag=name, value=not current).permission)


class ControlFlagsAdmin(admin.ModelAdmin):
    form = ControlFlagsForm
    list_display = ("paused", "killed", "proof_mode", "updated_at", "updated_by")
    fieldsets = (
        ("Flags", {"fields": ("paused", "killed", "proof_mode")}),
        ("Why (required, recorded in the audit trail)", {"fields": ("reason", "confirm_kill", "confirm_real")}),
        ("Last change", {"fields": ("updated_at", "updated_by")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ControlFlags | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ControlFlags | None = None) -> bool:
        return any(request.user.has_perm(verb.permission) for verb in verbs_where(target=FLAGS))

    def has_view_permission(self, request: HttpRequest, obj: ControlFlags | None = None) -> bool:
        return super().has_view_permission(request, obj) or self.has_change_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: ControlFlags | None = None) -> "_ListOrTuple[str]":
        locked = [name for name in FLAG_FIELDS if not _flag_change_allowed(request.user, obj, name)]
        return [*locked, "updated_at", "updated_by"]

    def get_fieldsets(self, request: HttpRequest, obj: ControlFlags | None = None) -> "_FieldsetSpec":
        if not self.has_change_permission(request, obj):
            return (self.fieldsets[0], self.fieldsets[2])
        return self.fieldsets

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        flags = control.control_flags_get()
        return redirect("admin:orchestration_controlflags_change", flags.pk)

    def save_model(self, request: HttpRequest, obj: ControlFlags, form: forms.Form, change: bool) -> None:
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

    # Django's log_change also takes a plain-text message; the stubs know only the structured list.
    def construct_change_message(  # type: ignore[override]
        self, request: HttpRequest, form: forms.Form, formsets: "Iterable[BaseFormSet[Any]]", add: bool = False
    ) -> str:
        changed = [name for name in form.changed_data if name in FLAG_FIELDS]
        values = ", ".join(f"{name}={form.cleaned_data[name]}" for name in changed) or "nothing"
        return f"Changed {values} through the control services; reason: {form.cleaned_data.get('reason', '')}"


class ScheduleForm(forms.ModelForm):
    """The service's validation (``schedule_clean``) names every bad field; a reason is asked for."""

    action_type = forms.ChoiceField(choices=())
    reason = reason_field()

    class Meta:
        model = Schedule
        fields = ("name", "enabled", "action_type", "payload_template", "cron", "interval_seconds", "catch_up")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        known = action_types()
        current = self.instance.action_type if self.instance.pk else None
        choices = [(name, name) for name in known]
        if current and current not in known:  # an adapter was removed: show it, clean() will refuse it
            choices.insert(0, (current, f"{current} (unknown)"))
        cast(forms.ChoiceField, self.fields["action_type"]).choices = choices

    # _post_clean and _update_errors are Django's (BaseModelForm), missing from the stubs.
    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        try:
            schedule_clean(schedule=self.instance)
        except ValidationError as exc:
            self._update_errors(exc)  # type: ignore[attr-defined]


class RateLimitForm(forms.ModelForm):
    """The service's validation (``rate_limit_validate``) names every bad field."""

    class Meta:
        model = RateLimit
        fields = ("action_type", "key_fields", "max_count", "period_seconds", "enabled")

    # _post_clean and _update_errors are Django's (BaseModelForm), missing from the stubs.
    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        try:
            rate_limit_validate(limit=self.instance)
        except ValidationError as exc:
            self._update_errors(exc)  # type: ignore[attr-defined]


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

    def save_model(self, request: HttpRequest, obj: Schedule, form: forms.Form, change: bool) -> None:
        schedule_save(schedule=obj, actor=request.user.get_username(), reason=form.cleaned_data["reason"])

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        schedule_delete(schedule=obj, actor=request.user.get_username(), reason="deleted in the admin")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            self.delete_model(request, schedule)


class RateLimitAdmin(admin.ModelAdmin):
    """Operators edit rate limits here; ``rate_limit_save`` / ``rate_limit_delete`` validate (known
    type, positive numbers, key fields the type's payload has, one key per type) and audit."""

    form = RateLimitForm

    list_display = ("action_type", "key_fields", "max_count", "period_seconds", "enabled", "updated_at", "updated_by")
    list_filter = ("action_type", "enabled")
    readonly_fields = ("updated_at", "updated_by")
    fields = ("action_type", "key_fields", "max_count", "period_seconds", "enabled", "updated_at", "updated_by")

    class Media:
        css = {"all": ["orchestration/console.css"]}

    def formfield_for_dbfield(
        self, db_field: "Field[Any, Any]", request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if db_field.name == "action_type":
            return forms.ChoiceField(
                choices=[("", "---------"), *((name, name) for name in action_types())],
                help_text="The rows of a type replace its AOL_RATE_LIMITS defaults.",
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: RateLimit, form: forms.Form, change: bool) -> None:
        rate_limit_save(limit=obj, actor=request.user.get_username())

    def delete_model(self, request: HttpRequest, obj: RateLimit) -> None:
        rate_limit_delete(limit=obj, actor=request.user.get_username())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RateLimit]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)
