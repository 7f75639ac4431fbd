"""The connected accounts' admin: add, change, remove; the credentials are write-only.

The changelist's "Verify" action asks each selected account's network who its credentials act as
(services/accounts.py ``account_verify``) and says, per account, whom or what is wrong.

The credentials field is a password input that is never filled in: not with the stored value (which
is encrypted and never decrypted for a page), and not with what was typed when the form comes back
with an error. Left empty on the change page, the stored credentials are kept. Every change goes
through services/accounts.py (encrypted, audited without values) and needs ``manage_accounts``.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from orchestration import permissions
from orchestration.credentials import credentials_fernet
from orchestration.exceptions import AccountCheckFailed, CredentialsUnavailable, InvalidAccount
from orchestration.models import Account
from orchestration.services.accounts import (
    account_add,
    account_change,
    account_fields_clean,
    account_remove,
    account_verify,
    credentials_clean,
    identity_text,
)

#: The most accounts one "Verify" request calls (each is a request to a network, with a timeout).
MAX_VERIFIED = 20


class AccountForm(forms.ModelForm):
    credentials = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password", "size": 80}),
        help_text='A JSON object, e.g. {"access_token": "…"}. Stored encrypted and never shown again; on an '
        "existing account, leave it empty to keep the stored credentials.",
    )
    reason = forms.CharField(max_length=500, required=False, help_text="Why; recorded in the audit trail.")

    class Meta:
        model = Account
        fields = ["name", "platform", "base_url"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        adding = self.instance.pk is None
        name = data.get("name", self.instance.name)
        platform = data.get("platform", self.instance.platform)
        try:
            if name and platform:
                _, _, data["base_url"] = account_fields_clean(
                    name=name, platform=platform, base_url=data.get("base_url", "")
                )
            if data.get("credentials"):
                data["credentials"] = credentials_clean(credentials=data["credentials"])
                credentials_fernet()  # refuse now, not at saving, when the keys are missing
            elif adding:
                self.add_error("credentials", "Give the account's credentials (a JSON object).")
            if not adding and not (data.get("reason") or "").strip():
                self.add_error("reason", "A reason is required to change an account.")
        except (InvalidAccount, CredentialsUnavailable) as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


class AccountAdmin(admin.ModelAdmin):
    form = AccountForm
    list_display = ("name", "platform", "base_url", "shown_credentials", "updated_at", "updated_by")
    list_filter = ("platform",)
    search_fields = ("name",)
    show_full_result_count = False
    actions = ["verify_accounts"]

    @admin.action(description="Verify: ask the network whom the credentials act as", permissions=["manage_accounts"])
    def verify_accounts(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        accounts = list(queryset.order_by("name")[: MAX_VERIFIED + 1])
        if len(accounts) > MAX_VERIFIED:
            self.message_user(
                request, f"Verify at most {MAX_VERIFIED} accounts at a time; nothing was checked.", messages.ERROR
            )
            return
        for account in accounts:
            try:
                identity = account_verify(account=account)
            except AccountCheckFailed as exc:
                self.message_user(request, f"{account.name}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{account.name}: ok, {identity_text(identity)}.", messages.SUCCESS)

    def has_manage_accounts_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request)

    @admin.display(description="credentials")
    def shown_credentials(self, account: Account) -> str:
        return "encrypted: " + ", ".join(account.credential_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Account | None = None) -> tuple[str, ...]:
        base = ("shown_credentials", "created_at", "created_by", "updated_at", "updated_by")
        return ("name", "platform", *base) if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Account | None = None) -> list[str]:  # type: ignore[override]
        if obj is None:
            return ["name", "platform", "base_url", "credentials", "reason"]
        return [
            "name",
            "platform",
            "base_url",
            "shown_credentials",
            "credentials",
            "reason",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
        ]

    def save_model(self, request: HttpRequest, obj: Account, form: forms.ModelForm, change: bool) -> None:
        data, actor = form.cleaned_data, request.user.get_username()
        if change:
            saved = account_change(
                name=obj.name,
                actor=actor,
                reason=data["reason"],
                base_url=data["base_url"],
                credentials=data.get("credentials") or None,
            )
        else:
            saved = account_add(
                name=data["name"],
                platform=data["platform"],
                base_url=data["base_url"],
                credentials=data["credentials"],
                actor=actor,
                reason=data.get("reason") or "",
            )
        obj.pk, obj.credential_fields = saved.pk, saved.credential_fields

    def delete_model(self, request: HttpRequest, obj: Account) -> None:
        account_remove(name=obj.name, actor=request.user.get_username(), reason="removed in the admin")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            self.delete_model(request, account)

    def _may_manage(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.MANAGE_ACCOUNTS)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or self._may_manage(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_manage(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_manage(request)
