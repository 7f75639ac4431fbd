"""The admin's flow control: rate limits edited with validation and audit, bulk cancel and priority."""

import pytest
from django.urls import reverse

from orchestration.models import Action, ActionStatus, AuditEntry, RateLimit
from orchestration.services.control import control_pause_type
from orchestration.services.enqueue import action_enqueue
from tests.console_fixtures import client_for, denied_entries

pytestmark = pytest.mark.django_db

ADD = reverse("admin:orchestration_ratelimit_add")
CHANGELIST = reverse("admin:orchestration_action_changelist")
GOOD = {
    "action_type": "POST_SOCIAL",
    "key_fields": "platform, account",
    "max_count": "5",
    "period_seconds": "3600",
    "enabled": "on",
}


def test_rate_limit__operator_adds_one_normalised_and_audited(operator):
    response = client_for(operator).post(ADD, GOOD)
    assert response.status_code == 302, response.content.decode()[:2000]
    row = RateLimit.objects.get()
    assert (row.key_fields, row.max_count, row.period_seconds, row.updated_by) == ("platform,account", 5, 3600, "oper")
    entry = AuditEntry.objects.get(verb="add rate limit")
    assert entry.after["max_count"] == 5 and entry.actor == "oper"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_count": "0"}, "greater than or equal to 1"),
        ({"max_count": "-5"}, "greater than or equal to 0"),
        ({"period_seconds": "0"}, "greater than or equal to 1"),
        ({"action_type": "NOPE"}, "Select a valid choice"),
        ({"key_fields": "platform,followers"}, "no rate-limit key field &#x27;followers&#x27;"),
    ],
)
def test_rate_limit__bad_values__the_form_says_why_and_nothing_is_saved(operator, change, message):
    page = client_for(operator).post(ADD, {**GOOD, **change}).content.decode()
    assert message in page
    assert not RateLimit.objects.exists() and not AuditEntry.objects.exists()


def test_rate_limit__change_and_delete_are_audited(operator):
    row = RateLimit.objects.create(
        action_type="POST_SOCIAL", key_fields="platform,account", max_count=5, period_seconds=3600
    )
    client = client_for(operator)
    client.post(reverse("admin:orchestration_ratelimit_change", args=[row.pk]), {**GOOD, "max_count": "3"})
    change = AuditEntry.objects.get(verb="change rate limit")
    assert (change.before["max_count"], change.after["max_count"]) == (5, 3)
    client.post(reverse("admin:orchestration_ratelimit_delete", args=[row.pk]), {"post": "yes"})
    assert not RateLimit.objects.exists()
    assert AuditEntry.objects.get(verb="delete rate limit").before["max_count"] == 3


def test_rate_limit__viewer_cannot_add(viewer):
    assert client_for(viewer).post(ADD, GOOD).status_code == 403
    assert not RateLimit.objects.exists()


def test_paused_types__listed_read_only(operator):
    control_pause_type(action_type="SLEEP", actor="alice", reason="drill over")
    page = client_for(operator).get(reverse("admin:orchestration_actiontypepause_changelist")).content.decode()
    assert "drill over" in page and "alice" in page
    assert client_for(operator).get(reverse("admin:orchestration_actiontypepause_add")).status_code == 403


# --- bulk cancel and priority --------------------------------------------------------------------------


def post_bulk(client, name, ids, **extra):
    data = {"action": name, "_selected_action": ids, "select_across": "0", "index": "0", **extra}
    return client.post(CHANGELIST, data, follow="confirm" in extra)


def test_bulk_cancel__asks_then_cancels_the_waiting_ones_and_skips_finished_ones(operator):
    waiting = [action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0] for _ in range(2)]
    done = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    Action.objects.filter(pk=done.pk).update(status=ActionStatus.SUCCESS)
    ids = [a.pk for a in [*waiting, done]]
    client = client_for(operator)
    assert "<strong>2</strong> actions will be CANCELLED" in post_bulk(client, "cancel_actions", ids).content.decode()
    page = post_bulk(client, "cancel_actions", ids, confirm="yes", reason="campaign pulled").content.decode()
    assert (
        "Cancel: 2 actions cancelled; 1 skipped, not waiting or running" in page and f"#{done.pk} is SUCCESS." in page
    )
    assert list(Action.objects.order_by("id").values_list("status", flat=True)) == ["CANCELLED", "CANCELLED", "SUCCESS"]


def test_bulk_cancel__only_finished_ones_chosen__warning_nothing_changed(operator):
    done = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    Action.objects.filter(pk=done.pk).update(status=ActionStatus.SUCCESS)
    page = client_for(operator).post(
        CHANGELIST, {"action": "cancel_actions", "_selected_action": [done.pk], "index": "0"}, follow=True
    )
    assert "none of the chosen actions is" in page.content.decode()
    assert Action.objects.get(pk=done.pk).status == ActionStatus.SUCCESS and not AuditEntry.objects.exists()


def test_bulk_set_priority__needs_a_priority_in_range_then_sets_it(operator):
    action = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    client = client_for(operator)
    page = post_bulk(
        client, "set_priority", [action.pk], confirm="yes", reason="urgent", priority="250"
    ).content.decode()
    assert "less than or equal to 100" in page
    assert Action.objects.get(pk=action.pk).priority == 0
    page = post_bulk(
        client, "set_priority", [action.pk], confirm="yes", reason="urgent", priority="80"
    ).content.decode()
    assert "Set priority: 1 action moved to priority 80." in page
    assert Action.objects.get(pk=action.pk).priority == 80


def test_bulk_cancel__refused_and_audited_for_staff_without_manage_dlq(viewer):
    action = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    post_bulk(client_for(viewer), "cancel_actions", [action.pk], confirm="yes", reason="sneaky")
    assert Action.objects.get(pk=action.pk).status == ActionStatus.PENDING
    assert denied_entries("cancel").get().actor == "viewer"
