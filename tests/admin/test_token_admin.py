"""The API tokens' admin: the secret shown once after creation, read-only afterwards, revoke with a reason."""

import re

import pytest
from django.contrib.auth.models import Permission

from orchestration.models import ApiToken, AuditEntry
from orchestration.services.tokens import secret_sha256, token_authenticate, token_create
from tests.console_fixtures import client_for

pytestmark = pytest.mark.django_db

ADD = "/admin/orchestration/apitoken/add/"
LIST = "/admin/orchestration/apitoken/"


def test_add__shows_the_secret_once_and_it_works(superuser):
    client = client_for(superuser)
    form = client.get(ADD).content.decode()
    assert 'type="checkbox"' in form and "propose" in form and "Expires in (days)" in form
    response = client.post(
        ADD, {"name": "planner-prod", "scopes": ["read", "propose"], "expires_in_days": "90", "reason": "go live"}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = re.search(r'<code id="token-secret">([^<]+)</code>', response.content.decode()).group(1)
    token = ApiToken.objects.get(name="planner-prod")
    assert token_authenticate(secret=secret).pk == token.pk and token.scopes == ["read", "propose"]
    assert AuditEntry.objects.get(verb="create API token").actor == "root"
    # Never again: not in the list, the change view, or a message on the next page.
    for page in (LIST, f"{LIST}{token.pk}/change/"):
        html = client.get(page).content.decode()
        assert token.prefix in html
        assert secret not in html and secret_sha256(secret) not in html


def test_add__bad_input_shows_errors_and_writes_nothing(superuser):
    client = client_for(superuser)
    token_create(name="taken", scopes="read", actor="test")
    for data, message in (
        ({"name": "bad name!", "scopes": ["read"]}, "not valid"),
        ({"name": "ok", "scopes": []}, "This field is required"),
        ({"name": "ok", "scopes": ["approve"]}, "Select a valid choice"),
        ({"name": "ok", "scopes": ["read"], "expires_in_days": "0"}, "greater than or equal to 1"),
        ({"name": "taken", "scopes": ["read"]}, "exists already"),
    ):
        response = client.post(ADD, data)
        assert response.status_code == 200 and message in response.content.decode(), message
        assert 'id="token-secret"' not in response.content.decode()
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["taken"]


def test_change_view__is_read_only_and_there_is_no_delete(superuser):
    token, _ = token_create(name="fixed", scopes="read", actor="test")
    client = client_for(superuser)
    html = client.get(f"{LIST}{token.pk}/change/").content.decode()
    assert 'name="scopes"' not in html and 'name="name"' not in html and "Save" not in html
    client.post(f"{LIST}{token.pk}/change/", {"name": "renamed", "scopes": '["pause"]'})
    assert ApiToken.objects.get(pk=token.pk).name == "fixed"
    assert client.get(f"{LIST}{token.pk}/delete/").status_code == 403


def test_revoke_action__asks_for_a_reason_then_revokes_and_audits(superuser):
    token, secret = token_create(name="leaky", scopes="read", actor="test")
    client = client_for(superuser)
    selection = {"action": "revoke", "_selected_action": [token.pk]}
    confirm = client.post(LIST, selection)
    assert confirm.status_code == 200 and "leaky" in confirm.content.decode()
    refused = client.post(LIST, {**selection, "confirm": "yes", "reason": ""})
    assert "Give a reason" in refused.content.decode() and ApiToken.objects.get().revoked_at is None
    client.post(LIST, {**selection, "confirm": "yes", "reason": "leaked in a log"})
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == "root"
    entry = AuditEntry.objects.get(verb="revoke API token")
    assert entry.actor == "root" and entry.reason == "leaked in a log"
    with pytest.raises(Exception, match="revoked"):
        token_authenticate(secret=secret)


def test_permissions__viewers_see_but_cannot_add_or_revoke_and_operators_are_not_given_it(viewer, operator):
    token, _ = token_create(name="seen", scopes="read", actor="test")
    for user in (viewer, operator):
        client = client_for(user)
        assert client.get(ADD).status_code == 403
        client.post(LIST, {"action": "revoke", "_selected_action": [token.pk], "confirm": "yes", "reason": "x"})
        assert ApiToken.objects.get().revoked_at is None
    assert client_for(viewer).get(LIST).status_code == 200
    manager = operator
    manager.user_permissions.add(Permission.objects.get(codename="manage_api_tokens"))
    manager = type(manager).objects.get(pk=manager.pk)  # fresh permission cache
    assert client_for(manager).get(ADD).status_code == 200
