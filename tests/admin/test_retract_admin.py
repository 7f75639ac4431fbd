"""Retract from the admin: an action on the actions changelist, for one selected REAL post, with a reason."""

import pytest
from django.urls import reverse

from orchestration.models import Action, ActionStatus, AuditEntry
from tests.console_fixtures import client_for
from tests.platform_servers.local_network import posted_action

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:orchestration_action_changelist")


def run(client, actions: list[Action], *, confirm: bool = True, reason: str = "posted by mistake"):
    data = {"action": "retract_post", "_selected_action": [a.pk for a in actions], "select_across": "0", "index": "0"}
    if confirm:
        data.update(confirm="yes", reason=reason)
    return client.post(CHANGELIST, data, follow=True)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_admin__retract_asks_for_a_reason_then_deletes_the_post(local_network, superuser):
    posted = posted_action(local_network)
    client = client_for(superuser)
    confirm = run(client, [posted], confirm=False).content.decode()
    assert "Confirm: Retract" in confirm and local_network.deleted == []
    response = run(client, [posted])
    assert messages_of(response) == ["Retract: 1 action retracted (post deleted)."]
    posted.refresh_from_db()
    assert posted.status == ActionStatus.RETRACTED and local_network.deleted == [posted.remote_id]
    assert AuditEntry.objects.get(verb="retract").reason == "posted by mistake"
    page = client.get(reverse("admin:orchestration_action_change", args=[posted.pk])).content.decode()
    assert 'class="badge badge-RETRACTED">RETRACTED<' in page
    listed = client.get(CHANGELIST, {"status__exact": "RETRACTED"}).content.decode()
    assert f"/admin/orchestration/action/{posted.pk}/change/" in listed


def test_admin__several_selected_are_refused_one_at_a_time(local_network, superuser):
    first, second = posted_action(local_network, key="a"), posted_action(local_network, key="b")
    response = run(client_for(superuser), [first, second])
    [message] = messages_of(response)
    assert "Retract one action at a time (2 were chosen)" in message and "Nothing changed." in message
    assert set(Action.objects.values_list("status", flat=True)) == {ActionStatus.SUCCESS}
    assert local_network.deleted == []


def test_admin__the_network_s_refusal_is_the_message_and_nothing_changes(local_network, superuser):
    posted = posted_action(local_network)
    local_network.tokens.clear()  # the token was revoked on the network
    [message] = messages_of(run(client_for(superuser), [posted]))
    assert f"did not delete post {posted.remote_id}: the access token is invalid (revoked?)" in message
    posted.refresh_from_db()
    assert posted.status == ActionStatus.SUCCESS


def test_admin__a_proof_success_is_refused_saying_nothing_was_posted(local_network, superuser):
    posted = posted_action(local_network)
    Action.objects.filter(pk=posted.pk).update(claimed_mode="PROOF")
    [message] = messages_of(run(client_for(superuser), [posted]))
    assert "ran in PROOF mode: nothing was posted" in message
    assert local_network.deleted == []


def test_admin__operators_without_retract_action_are_not_offered_it(local_network, operator):
    posted = posted_action(local_network)
    client = client_for(operator)
    menu = client.get(CHANGELIST).content.decode()
    assert 'value="retract_post"' not in menu and 'value="cancel_actions"' in menu
    run(client, [posted])
    posted.refresh_from_db()
    assert posted.status == ActionStatus.SUCCESS
    assert AuditEntry.objects.get(verb="retract").outcome == "DENIED"
