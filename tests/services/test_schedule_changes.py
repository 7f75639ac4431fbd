"""Operator changes to schedules through the service: validated, saved and audited together,
whoever calls it (the admin, a script, a shell)."""

import pytest
from django.core.exceptions import ValidationError

from orchestration.models import AuditEntry, AuditOutcome, Schedule
from orchestration.services.schedules import schedule_delete, schedule_save

pytestmark = pytest.mark.django_db

POST = {"platform": "twitter", "message": "Tip for {period}"}


def new_schedule(**fields) -> Schedule:
    values = {"name": "hourly tip", "action_type": "POST_SOCIAL", "payload_template": POST, "interval_seconds": 3600}
    return Schedule(**{**values, **fields})


def test_schedule_save__a_schedule_saved_from_python_is_audited_with_who_and_why():
    schedule = schedule_save(schedule=new_schedule(), actor="script:ops@host", reason="hourly tips from today")
    stored = Schedule.objects.get()
    assert stored.pk == schedule.pk and stored.next_run_at is not None
    entry = AuditEntry.objects.get()
    assert (entry.verb, entry.outcome, entry.actor, entry.reason) == (
        "add schedule",
        AuditOutcome.DONE,
        "script:ops@host",
        "hourly tips from today",
    )
    assert entry.target == f"schedule #{stored.pk} hourly tip"
    assert entry.after["interval_seconds"] == 3600 and entry.before == {}


def test_schedule_save__a_change_records_only_the_changed_fields_and_an_unchanged_save_is_no_change():
    schedule = schedule_save(schedule=new_schedule(), actor="ops", reason="start")
    schedule.interval_seconds = 600
    schedule_save(schedule=schedule, actor="ops", reason="more often")
    change = AuditEntry.objects.get(verb="change schedule", outcome=AuditOutcome.DONE)
    assert (change.before, change.after, change.reason) == (
        {"interval_seconds": 3600},
        {"interval_seconds": 600},
        "more often",
    )
    schedule_save(schedule=Schedule.objects.get(pk=schedule.pk), actor="ops", reason="no-op")
    assert AuditEntry.objects.get(verb="change schedule", outcome=AuditOutcome.NO_CHANGE).reason == "no-op"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"interval_seconds": None, "cron": "every morning"}, "cron"),
        ({"action_type": "NO_SUCH_TYPE"}, "action_type"),
        ({"payload_template": {"platform": "twitter"}}, "payload_template"),
        ({"catch_up": 0}, "catch_up"),
    ],
)
def test_schedule_save__an_invalid_schedule_is_refused_by_field_and_nothing_is_written(fields, field):
    with pytest.raises(ValidationError) as caught:
        schedule_save(schedule=new_schedule(**fields), actor="ops", reason="try")
    assert field in caught.value.message_dict
    assert not Schedule.objects.exists() and not AuditEntry.objects.exists()


def test_schedule_save__a_taken_name_is_refused_and_nothing_is_written():
    schedule_save(schedule=new_schedule(), actor="ops", reason="first")
    with pytest.raises(ValidationError) as caught:
        schedule_save(schedule=new_schedule(interval_seconds=60), actor="ops", reason="second")
    assert "name" in caught.value.message_dict
    assert Schedule.objects.count() == 1 and AuditEntry.objects.count() == 1


def test_schedule_delete__deletes_and_audits_the_last_values():
    schedule = schedule_save(schedule=new_schedule(), actor="ops", reason="start")
    pk = schedule.pk
    schedule_delete(schedule=schedule, actor="ops", reason="campaign over")
    assert not Schedule.objects.exists()
    entry = AuditEntry.objects.get(verb="delete schedule")
    assert (entry.target, entry.reason, entry.before["interval_seconds"]) == (
        f"schedule #{pk} hourly tip",
        "campaign over",
        3600,
    )
