"""The API tokens' admin: list them, create one (its secret shown once), revoke with a reason.

Creation and revocation go through services/tokens.py (audited with the signed-in user) and need
the ``manage_api_tokens`` permission. A token cannot be edited: its scopes, expiry and secret are
fixed at creation (revoke it and create another). Its secret is never stored, so it is shown on the
page that answers the creation and nowhere else: not in a message (messages live in a cookie or
the session), not in the change view, and that page is sent with Cache-Control: no-store.
"""

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from orchestration import permissions
from orchestration.exceptions import InvalidToken
from orchestration.models import ApiToken, TokenScope
from orchestration.services.tokens import token_create, token_name_clean, token_revoke
from orchestration.web.forms import ReasonForm

SCOPE_HELP = {
    TokenScope.READ: "read actions, their artifacts and the status",
    TokenScope.PROPOSE: "queue actions (REAL effects still wait for a person's approval)",
    TokenScope.CANCEL: "cancel actions",
    TokenScope.PAUSE: "pause and kill the daemon (never resume or revive)",
}


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Who uses it, e.g. planner-prod.")
    scopes = forms.MultipleChoiceField(
        choices=[(scope, f"{scope}: {SCOPE_HELP[TokenScope(scope)]}") for scope in TokenScope.values],
        widget=forms.CheckboxSelectMultiple,
        help_text="No scope can approve, reject, switch to REAL, resume or revive: those stay with people.",
    )
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, label="Expires in (days)", help_text="Empty: never."
    )
    reason = forms.CharField(max_length=500, required=False, help_text="Why; recorded in the audit trail.")

    def clean_name(self) -> str:
        try:
            return token_name_clean(name=self.cleaned_data["name"])
        except InvalidToken as exc:
            raise forms.ValidationError(str(exc)) from None


class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "shown_prefix", "shown_scopes", "created_at", "expires_at", "last_used_at", "revoked_at")
    search_fields = ("name", "prefix")
    show_full_result_count = False
    actions = ["revoke"]
    fields = (
        "name",
        "shown_prefix",
        "shown_scopes",
        "created_at",
        "created_by",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )
    readonly_fields = fields

    @admin.display(description="prefix", ordering="prefix")
    def shown_prefix(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    @admin.display(description="scopes")
    def shown_scopes(self, token: ApiToken) -> str:
        return ", ".join(token.scopes)

    def has_manage_api_tokens_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.MANAGE_API_TOKENS)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or self.has_manage_api_tokens_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_manage_api_tokens_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # fixed at creation: revoke and create another

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked tokens stay, so the audit trail's token:<name> keeps meaning something

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None) -> Any:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = TokenCreateForm(request.POST if request.method == "POST" else None)
        context = {
            **self.admin_site.each_context(request),
            "title": "Create an API token",
            "opts": self.model._meta,
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            try:
                token, secret = token_create(
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    actor=request.user.get_username(),
                    reason=form.cleaned_data["reason"],
                    expires_in=timedelta(days=days) if days else None,
                )
            except InvalidToken as exc:
                form.add_error(None, str(exc))
            else:
                context.update({"title": f"API token {token.name} created", "token": token, "secret": secret})
                response = TemplateResponse(request, "admin/orchestration/apitoken/created.html", context)
                add_never_cache_headers(response)  # Cache-Control: no-store: the secret is in this page only
                return response
        return TemplateResponse(request, "admin/orchestration/apitoken/add.html", context)

    @admin.action(description="Revoke the selected API tokens", permissions=["manage_api_tokens"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> HttpResponse | None:
        live = list(queryset.filter(revoked_at__isnull=True).order_by("name"))
        if not live:
            self.message_user(request, "None of the selected tokens is live; nothing to revoke.", messages.WARNING)
            return None
        form = ReasonForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            for token in live:
                token_revoke(name=token.name, actor=request.user.get_username(), reason=form.cleaned_data["reason"])
            names = ", ".join(token.name for token in live)
            self.message_user(request, f"{len(live)} API token(s) revoked: {names}.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:orchestration_apitoken_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Confirm: revoke API tokens",
            "opts": self.model._meta,
            "tokens": live,
            "form": form,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/orchestration/apitoken/revoke_confirmation.html", context)
