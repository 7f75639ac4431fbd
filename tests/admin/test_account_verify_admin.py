"""The accounts changelist's "Verify" action: one message per account, from the network's who-am-I answer."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from orchestration.adapters.platforms import PLATFORMS
from orchestration.models import Account
from tests.console_fixtures import client_for
from tests.platform_servers.local_network import READ_ONLY_TOKEN, TOKEN, account_connect

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:orchestration_account_changelist")


def run(client, accounts: list[Account]):
    data = {"action": "verify_accounts", "_selected_action": [a.pk for a in accounts], "index": "0"}
    return client.post(CHANGELIST, data, follow=True)


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


def test_admin_verify__one_message_per_account_saying_who_or_what_is_wrong(local_network, superuser, monkeypatch):
    monkeypatch.delitem(PLATFORMS, "bluesky", raising=False)
    good = account_connect(local_network, name="brand-main")
    scopeless = account_connect(local_network, name="reader", token=READ_ONLY_TOKEN)
    local_network.tokens[READ_ONLY_TOKEN] = set()
    blue = account_connect(local_network, name="blue", platform="bluesky")
    response = run(client_for(superuser), [good, scopeless, blue])
    assert messages_of(response) == [
        (
            "error",
            "blue: There is no REAL integration for bluesky yet, so account 'blue' cannot be verified (nor "
            "used in REAL mode).",
        ),
        ("success", f"brand-main: ok, acts as @brand ({local_network.url}/@brand)."),
        ("error", "reader: missing scope: the token lacks read:accounts; create one that has it"),
    ]
    page = response.content.decode()
    assert TOKEN not in page and READ_ONLY_TOKEN not in page


def test_admin_verify__needs_manage_accounts(local_network, django_user_model):
    account = account_connect(local_network)
    viewer = django_user_model.objects.create_user("looker", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_account"))
    client = client_for(viewer)
    assert 'value="verify_accounts"' not in client.get(CHANGELIST).content.decode()
    run(client, [account])
    assert local_network.requests == []  # nothing was asked of the network
    manager = django_user_model.objects.create_user("manager", password="x", is_staff=True)
    manager.user_permissions.add(Permission.objects.get(codename="manage_accounts"))
    assert 'value="verify_accounts"' in client_for(manager).get(CHANGELIST).content.decode()
