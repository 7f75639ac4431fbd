"""Schedules in the admin: add, change and delete with validation errors shown, every change audited."""

import pytest
from django.urls import reverse

from orchestration.models import AuditEntry, Schedule
from tests.console_fixtures import client_for

pytestmark = pytest.mark.django_db

ADD = reverse("admin:orchestration_schedule_add")


def form(**changes) -> dict:
    data = {
        "name": "weekly newsletter",
        "enabled": "on",
        "action_type": "SEND_EMAIL",
        "payload_template": '{"to": "list@example.com", "subject": "News for {period}", "body": "Hello"}',
        "cron": "0 9 * * 1",
        "interval_seconds": "",
        "catch_up": "1",
        "reason": "weekly newsletter starts",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_schedule_admin__add_saves_computes_the_next_run_and_audits(superuser):
    response = client_for(superuser).post(ADD, form())
    assert response.status_code == 302, response.content.decode()[:2000]
    schedule = Schedule.objects.get()
    assert schedule.next_run_at is not None and schedule.next_run_at.strftime("%a %H:%M") == "Mon 09:00"
    entry = AuditEntry.objects.get(verb="add schedule")
    assert (entry.actor, entry.outcome, entry.reason) == ("root", "DONE", "weekly newsletter starts")
    assert entry.target == f"schedule #{schedule.pk} weekly newsletter"
    assert entry.after["cron"] == "0 9 * * 1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cron": "0 25 * * *"}, "is not a valid cron expression"),
        ({"cron": "", "interval_seconds": "0"}, "greater than zero, not 0"),
        ({"cron": "", "interval_seconds": "-10"}, "Ensure this value is greater than or equal to 0"),
        ({"cron": ""}, "Give a cron expression or an interval in seconds"),
        ({"interval_seconds": "60"}, "either a cron expression or an interval, not both"),
        ({"action_type": "SEND_FAX"}, "Select a valid choice. SEND_FAX is not one of the available choices."),
        ({"payload_template": '{"to": "not an address", "subject": "s", "body": "b"}'}, "is not a valid email"),
        ({"payload_template": "{not json"}, "Enter a valid JSON"),
        ({"catch_up": "0"}, "from 1 to 100, not 0"),
        ({"reason": ""}, "Give a reason: it is recorded in the audit trail."),
    ],
)
def test_schedule_admin__bad_input_is_shown_and_nothing_is_saved(superuser, changes, message):
    response = client_for(superuser).post(ADD, form(**changes))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Schedule.objects.exists()
    assert not AuditEntry.objects.filter(verb="add schedule").exists()


def test_schedule_admin__change_audits_before_and_after(superuser):
    client = client_for(superuser)
    client.post(ADD, form())
    schedule = Schedule.objects.get()
    change = reverse("admin:orchestration_schedule_change", args=[schedule.pk])
    response = client.post(change, form(cron="", interval_seconds="3600", reason="hourly now"))
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.interval_seconds) == ("", 3600)
    entry = AuditEntry.objects.get(verb="change schedule")
    assert entry.before == {"cron": "0 9 * * 1", "interval_seconds": None}
    assert entry.after == {"cron": "", "interval_seconds": 3600}
    assert entry.reason == "hourly now"


def test_schedule_admin__delete_is_audited(superuser):
    client = client_for(superuser)
    client.post(ADD, form())
    schedule = Schedule.objects.get()
    response = client.post(reverse("admin:orchestration_schedule_delete", args=[schedule.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Schedule.objects.exists()
    entry = AuditEntry.objects.get(verb="delete schedule")
    assert entry.before["name"] == "weekly newsletter"


def test_schedule_admin__a_viewer_cannot_add(viewer):
    response = client_for(viewer).post(ADD, form())
    assert response.status_code == 403
    assert not Schedule.objects.exists()


def test_schedule_admin__the_operators_group_may_manage_schedules(operator):
    response = client_for(operator).post(ADD, form())
    assert response.status_code == 302
    assert Schedule.objects.get().name == "weekly newsletter"
    assert AuditEntry.objects.get(verb="add schedule").actor == "oper"


def test_schedules_view__lists_schedules_with_their_next_run(superuser):
    client = client_for(superuser)
    client.post(ADD, form())
    page = client.get(reverse("orchestration:schedules")).content.decode()
    assert 'id="card-schedules"' in page and "weekly newsletter" in page and "0 9 * * 1" in page
    data = client.get(reverse("orchestration:status_json")).json()
    [schedule] = data["schedules"]
    assert (schedule["name"], schedule["rule"], schedule["enabled"]) == ("weekly newsletter", "0 9 * * 1", True)
    assert schedule["next_run_at"].endswith("+00:00")
