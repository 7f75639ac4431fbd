"""The connected accounts' admin: credentials are write-only, every change needs manage_accounts and is audited."""

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Permission
from django.urls import reverse

from orchestration.credentials import account_credentials
from orchestration.models import Account, AuditEntry
from orchestration.services.accounts import account_add
from tests.console_fixtures import client_for

pytestmark = pytest.mark.django_db

TOKEN = "admin-token-CANARY-3131"
ADD = reverse("admin:orchestration_account_add")


@pytest.fixture(autouse=True)
def keys(settings):
    settings.AOL_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]


def change_url(account: Account) -> str:
    return reverse("admin:orchestration_account_change", args=[account.pk])


def test_account_admin__add_stores_encrypted_and_no_page_shows_the_credentials(superuser):
    client = client_for(superuser)
    response = client.post(
        ADD,
        {
            "name": "brand-main",
            "platform": "mastodon",
            "base_url": "https://social.example",
            "credentials": f'{{"access_token": "{TOKEN}"}}',
            "reason": "launch",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    account = Account.objects.get()
    assert account_credentials(account=account) == {"access_token": TOKEN}
    assert AuditEntry.objects.get(verb="add account").actor == "root"
    for url in (reverse("admin:orchestration_account_changelist"), change_url(account)):
        page = client.get(url).content.decode()
        assert "encrypted: access_token" in page and TOKEN not in page
        assert account.credentials_encrypted not in page


def test_account_admin__a_refused_form_does_not_echo_the_typed_credentials(superuser):
    page = client_for(superuser).post(
        ADD, {"name": "Bad Name", "platform": "mastodon", "base_url": "", "credentials": f'{{"t": "{TOKEN}"}}'}
    )
    text = page.content.decode()
    assert page.status_code == 200 and "must be 1-64 lower-case letters" in text
    assert TOKEN not in text and not Account.objects.exists()


def test_account_admin__change_keeps_credentials_when_left_empty_and_replaces_them_when_given(superuser):
    account = account_add(
        name="brand-x", platform="x", credentials={"bearer_token": TOKEN}, actor="ops", reason="setup"
    )
    client = client_for(superuser)
    form = {"base_url": "https://api.x.example", "credentials": "", "reason": "new API host"}
    assert client.post(change_url(account), form).status_code == 302
    account.refresh_from_db()
    assert account.base_url == "https://api.x.example"
    assert account_credentials(account=account) == {"bearer_token": TOKEN}
    form = {"base_url": "https://api.x.example", "credentials": '{"bearer_token": "new-one"}', "reason": "rotated"}
    assert client.post(change_url(account), form).status_code == 302
    account.refresh_from_db()
    assert account_credentials(account=account) == {"bearer_token": "new-one"}
    # A change needs a reason.
    refused = client.post(change_url(account), {"base_url": "", "credentials": "", "reason": ""})
    assert refused.status_code == 200 and "A reason is required" in refused.content.decode()


def test_account_admin__viewers_see_the_list_but_cannot_add_change_or_delete(viewer):
    account = account_add(name="brand-x", platform="x", credentials={"bearer_token": TOKEN}, actor="ops")
    client = client_for(viewer)
    assert client.get(reverse("admin:orchestration_account_changelist")).status_code == 200
    assert client.get(ADD).status_code == 403
    assert client.post(change_url(account), {"base_url": "", "credentials": "", "reason": "x"}).status_code == 403
    delete = reverse("admin:orchestration_account_delete", args=[account.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Account.objects.count() == 1


def test_account_admin__manage_accounts_may_delete_and_it_is_audited(viewer):
    viewer.user_permissions.add(Permission.objects.get(codename="manage_accounts"))
    account = account_add(name="brand-x", platform="x", credentials={"bearer_token": TOKEN}, actor="ops")
    delete = reverse("admin:orchestration_account_delete", args=[account.pk])
    assert client_for(viewer).post(delete, {"post": "yes"}).status_code == 302
    assert not Account.objects.exists()
    assert AuditEntry.objects.get(verb="remove account").actor == "viewer"
