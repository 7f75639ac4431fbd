"""Retract from the console: one action's page offers it for a REAL post, posts it through the verb table,
says what happened; the RETRACTED status shows in the console's counts, filters and JSON."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from orchestration.models import Action, ActionStatus, AuditEntry
from tests.console_fixtures import client_for, operator, superuser  # noqa: F401  (fixtures)
from tests.platform_servers.local_network import posted_action

pytestmark = pytest.mark.django_db

RETRACT_URL = reverse("orchestration:queue_actions", args=["retract"])


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def page_of(action: Action) -> str:
    return reverse("orchestration:action", args=[action.pk])


def post_retract(client, action: Action, reason: str = "posted by mistake"):
    return client.post(
        RETRACT_URL,
        {"queue-action_ids": str(action.pk), "queue-reason": reason, "return_to": page_of(action)},
        follow=True,
    )


def test_console__the_action_page_offers_retract_only_for_a_real_post(local_network, superuser):  # noqa: F811
    client = client_for(superuser)
    posted = posted_action(local_network)
    page = client.get(page_of(posted)).content.decode()
    assert 'id="verb-retract"' in page and f'action="{RETRACT_URL}"' in page and ">Retract</button>" in page
    Action.objects.filter(pk=posted.pk).update(claimed_mode="PROOF")  # a PROOF run posted nothing
    assert 'id="verb-retract"' not in client.get(page_of(posted)).content.decode()


def test_console__retract_deletes_the_post_and_the_page_shows_retracted(local_network, superuser):  # noqa: F811
    posted = posted_action(local_network)
    response = post_retract(client_for(superuser), posted)
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == page_of(posted)
    assert "Retract: 1 action retracted (post deleted)." in page
    assert 'id="action-status" class="badge badge-RETRACTED">RETRACTED<' in page
    assert "(retracted: the post was deleted)" in page and 'id="verb-retract"' not in page
    assert f"retract by root: Local network deleted post {posted.remote_id}" in page  # the timeline
    assert local_network.deleted == [posted.remote_id]
    entry = AuditEntry.objects.get(verb="retract")
    assert (entry.actor, entry.outcome, entry.reason) == ("root", "DONE", "posted by mistake")


def test_console__a_refusal_is_shown_beside_the_control_and_nothing_changes(local_network, superuser):  # noqa: F811
    posted = posted_action(local_network)
    local_network.script.append(500)
    response = post_retract(client_for(superuser), posted)
    page = response.content.decode()
    assert response.status_code == 200 and "Nothing was changed" in page
    assert f"Local network did not delete post {posted.remote_id}: the network failed (HTTP 500)" in page
    posted.refresh_from_db()
    assert posted.status == ActionStatus.SUCCESS and not AuditEntry.objects.filter(verb="retract").exists()


def test_console__a_reason_is_required(local_network, superuser):  # noqa: F811
    posted = posted_action(local_network)
    page = post_retract(client_for(superuser), posted, reason="").content.decode()
    assert "Give a reason: it is recorded in the audit trail." in page
    posted.refresh_from_db()
    assert posted.status == ActionStatus.SUCCESS and local_network.deleted == []


def test_console__operators_need_retract_action_granted_to_them(local_network, operator):  # noqa: F811
    posted = posted_action(local_network)
    client = client_for(operator)
    page = client.get(page_of(posted)).content.decode()
    assert "You lack <code>orchestration.retract_action</code>" in page
    response = post_retract(client, posted)
    assert response.status_code == 403
    denied = AuditEntry.objects.get(verb="retract")
    assert denied.outcome == "DENIED" and denied.after == {"missing_permission": "orchestration.retract_action"}
    posted.refresh_from_db()
    assert posted.status == ActionStatus.SUCCESS and local_network.deleted == []

    operator.user_permissions.add(Permission.objects.get(codename="retract_action"))
    assert "1 action retracted" in post_retract(client_for(operator), posted).content.decode()


def test_console__retracted_is_counted_filtered_and_in_the_json(local_network, superuser):  # noqa: F811
    client = client_for(superuser)
    posted = posted_action(local_network)
    post_retract(client, posted)
    actions = client.get(reverse("orchestration:actions"), {"status": "RETRACTED"}).content.decode()
    assert '<option value="RETRACTED" selected>Retracted</option>' in actions
    assert f'data-action-id="{posted.pk}"' in actions and "badge-RETRACTED" in actions
    assert client.get(reverse("orchestration:status_json")).json()["counts"]["RETRACTED"] == 1
    overview = client.get(reverse("orchestration:status")).content.decode()
    assert "Retracted" in overview
    css = b"".join(client.get("/static/orchestration/console.css").streaming_content).decode()
    assert ".badge-RETRACTED" in css
