"""Schedules in process: periods, validation, firing once per period, catch-up, fencing."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestration.models import Action, ExecutionLog, LogLevel, Schedule
from orchestration.services.schedules import periods_due, schedule_clean, schedule_fire_due, schedule_key
from tests.factories import hold_lease

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
POST = {"platform": "twitter", "message": "Daily tip for {period} from {schedule}"}


def make_schedule(*, now: datetime = T0, **fields) -> Schedule:
    """A validated, saved schedule whose periods start after ``now``."""
    values = {"name": "daily tip", "action_type": "POST_SOCIAL", "payload_template": POST, "interval_seconds": 60}
    values.update(fields)
    schedule = Schedule(**values)
    schedule_clean(schedule=schedule)
    schedule.save()
    # Saved "at" ``now``: its first period is the first one after it.
    from orchestration.services.schedules import schedule_period_next

    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=schedule_period_next(schedule=schedule, after=now))
    schedule.refresh_from_db()
    return schedule


def fired_keys() -> list[str]:
    return list(Action.objects.order_by("id").values_list("idempotency_key", flat=True))


# --- periods ---------------------------------------------------------------------------------------------


def test_periods_due__interval_periods_are_multiples_since_the_epoch():
    periods, skipped = periods_due(
        cron="", interval_seconds=3600, first=T0, now=T0 + timedelta(hours=2, minutes=5), limit=10
    )
    assert periods == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert not skipped


def test_periods_due__only_the_newest_catch_up_periods():
    periods, skipped = periods_due(
        cron="*/15 * * * *", interval_seconds=None, first=T0, now=T0 + timedelta(hours=1), limit=2
    )
    assert periods == [T0 + timedelta(minutes=45), T0 + timedelta(hours=1)]
    assert skipped


def test_periods_due__cron_weekdays_at_nine():
    first = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)  # Friday
    periods, _ = periods_due(
        cron="0 9 * * 1-5", interval_seconds=None, first=first, now=datetime(2026, 3, 10, 12, tzinfo=UTC), limit=10
    )
    assert [p.strftime("%a %H:%M") for p in periods] == ["Fri 09:00", "Mon 09:00", "Tue 09:00"]


# --- validation: a clear message per field, nothing saved ---------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"cron": "61 * * * *", "interval_seconds": None}, "cron", "'61 * * * *' is not a valid cron expression"),
        ({"cron": "* * * *", "interval_seconds": None}, "cron", "has 4 field(s), not 5. Use five fields"),
        ({"cron": "@sometimes", "interval_seconds": None}, "cron", "'@sometimes' is not a known alias"),
        ({"cron": "0 9 * * *", "interval_seconds": 60}, "interval_seconds", "either a cron expression or an interval"),
        ({"interval_seconds": None}, "cron", "Give a cron expression or an interval in seconds"),
        ({"interval_seconds": 0}, "interval_seconds", "greater than zero, not 0"),
        ({"interval_seconds": -5}, "interval_seconds", "greater than zero, not -5"),
        ({"action_type": "SEND_FAX"}, "action_type", "Unknown action type 'SEND_FAX'; known types: DRAFT_SOCIAL"),
        ({"payload_template": {"platform": "myspace", "message": "x"}}, "payload_template", "'myspace' is not"),
        ({"payload_template": {"platform": "twitter"}}, "payload_template", "POST_SOCIAL rejects this payload"),
        ({"payload_template": ["not", "an", "object"]}, "payload_template", "must be a JSON object"),
        ({"catch_up": 0}, "catch_up", "from 1 to 100, not 0"),
        ({"catch_up": 101}, "catch_up", "from 1 to 100, not 101"),
    ],
)
def test_schedule_clean__bad_input_names_the_field_and_saves_nothing(fields, field, message):
    values = {"name": "bad", "action_type": "POST_SOCIAL", "payload_template": POST, "interval_seconds": 60}
    schedule = Schedule(**{**values, **fields})
    with pytest.raises(ValidationError) as caught:
        schedule_clean(schedule=schedule)
    assert field in caught.value.message_dict
    assert any(message in text for text in caught.value.message_dict[field]), caught.value.message_dict
    assert not Schedule.objects.exists()


def test_schedule_clean__rendered_template_is_what_the_adapter_checks():
    # 280 characters for twitter: the template fits, but the rendered period (+25 characters) does not.
    schedule = Schedule(
        name="long",
        action_type="POST_SOCIAL",
        payload_template={"platform": "twitter", "message": "x" * 270 + "{period}"},
        interval_seconds=60,
    )
    with pytest.raises(ValidationError, match="X allows at most 280"):
        schedule_clean(schedule=schedule)


def test_schedule_save__database_refuses_an_impossible_rule():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Schedule.objects.bulk_create(
            [Schedule(name="x", action_type="POST_SOCIAL", payload_template=POST, cron="", interval_seconds=None)]
        )


# --- firing ----------------------------------------------------------------------------------------------


def test_schedule_fire_due__nothing_due_costs_one_query():
    make_schedule()
    with CaptureQueriesContext(connection) as captured:
        report = schedule_fire_due(now=T0 + timedelta(seconds=30))
    assert len(captured.captured_queries) == 1
    assert report.created == [] and not Action.objects.exists()


def test_schedule_fire_due__no_schedule_costs_one_query():
    with CaptureQueriesContext(connection) as captured:
        schedule_fire_due(now=T0)
    assert len(captured.captured_queries) == 1


def test_schedule_fire_due__one_action_per_period_with_the_period_key_and_rendered_payload():
    schedule = make_schedule()
    now = T0 + timedelta(seconds=61)
    report = schedule_fire_due(now=now)
    assert len(report.created) == 1
    action = Action.objects.get()
    period = T0 + timedelta(seconds=60)
    assert action.idempotency_key == schedule_key(schedule_id=schedule.pk, period=period)
    assert action.idempotency_key == f"schedule:{schedule.pk}:2026-03-02T09:01:00+00:00"
    assert action.payload == {
        "platform": "twitter",
        "message": "Daily tip for 2026-03-02T09:01:00+00:00 from daily tip",
    }
    assert action.not_before == period
    schedule.refresh_from_db()
    assert schedule.last_period_at == period
    assert schedule.next_run_at == T0 + timedelta(seconds=120)


def test_schedule_fire_due__firing_twice_for_a_period_yields_one_action():
    schedule = make_schedule()
    now = T0 + timedelta(seconds=61)
    schedule_fire_due(now=now)
    # A second caller that still sees the period as due (a standby that read the schedule before the
    # first caller moved it on) re-queues nothing: the key already exists.
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=T0 + timedelta(seconds=60))
    again = schedule_fire_due(now=now)
    assert again.created == [] and len(again.existing) == 1
    assert Action.objects.count() == 1


def test_schedule_fire_due__after_downtime_fires_at_most_catch_up_periods_the_newest():
    schedule = make_schedule(catch_up=2)
    report = schedule_fire_due(now=T0 + timedelta(minutes=10, seconds=5))  # ten periods were missed
    assert len(report.created) == 2 and report.skipped_periods == 1
    assert fired_keys() == [
        f"schedule:{schedule.pk}:2026-03-02T09:09:00+00:00",
        f"schedule:{schedule.pk}:2026-03-02T09:10:00+00:00",
    ]
    warning = ExecutionLog.objects.get(level=LogLevel.WARNING)
    assert "missed periods older than 2026-03-02T09:09:00+00:00 were passed over (catch-up 2)" in warning.message
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(minutes=11)


def test_schedule_fire_due__disabled_schedule_never_fires_and_reenabling_skips_the_gap():
    schedule = make_schedule()
    schedule.enabled = False
    schedule.save()
    assert Schedule.objects.get().next_run_at is None
    assert schedule_fire_due(now=T0 + timedelta(hours=1)).created == []
    schedule.enabled = True
    schedule.save()
    schedule.refresh_from_db()
    assert schedule.next_run_at > T0 + timedelta(hours=1)  # starts after now, not back at 09:01


def test_schedule_fire_due__a_caller_that_lost_the_lease_fires_nothing():
    make_schedule()
    old = hold_lease(owner="a:1", ttl_seconds=0.001)
    import time

    time.sleep(0.01)
    hold_lease(owner="b:2")  # took over: a new token
    assert schedule_fire_due(now=T0 + timedelta(minutes=5), token=old).created == []
    assert not Action.objects.exists()


def test_schedule_fire_due__template_the_adapter_no_longer_accepts_logs_one_error_per_period():
    schedule = make_schedule()
    Schedule.objects.filter(pk=schedule.pk).update(payload_template={"platform": "myspace", "message": "x"})
    report = schedule_fire_due(now=T0 + timedelta(seconds=61))
    assert report.created == [] and len(report.errors) == 1
    assert "'myspace' is not supported" in ExecutionLog.objects.get(level=LogLevel.ERROR).message
    assert schedule_fire_due(now=T0 + timedelta(seconds=62)).errors == []  # the period was passed over
    assert Schedule.objects.get().next_run_at == T0 + timedelta(seconds=120)


def test_schedule_clean__a_cron_expression_that_never_matches_is_refused():
    schedule = Schedule(name="never", action_type="POST_SOCIAL", payload_template=POST, cron="0 0 31 2 *")
    with pytest.raises(ValidationError, match="never matches a date"):
        schedule_clean(schedule=schedule)


def test_schedule_fire_due__a_row_broken_behind_the_admins_back_does_not_stop_the_others():
    broken = make_schedule(name="broken")
    make_schedule(name="fine")
    Schedule.objects.filter(pk=broken.pk).update(cron="not a cron", interval_seconds=None)
    report = schedule_fire_due(now=T0 + timedelta(seconds=61))
    assert len(report.created) == 1 and len(report.errors) == 1
    assert f"schedule #{broken.pk}" in report.errors[0]


def test_tick__fires_due_schedules_before_claiming_but_not_while_paused():
    from django.utils import timezone

    from orchestration.daemon import Daemon, DaemonConfig
    from orchestration.services.control import control_pause, control_resume

    schedule = make_schedule(now=timezone.now() - timedelta(minutes=5))
    daemon = Daemon(DaemonConfig.from_settings(owner="test:1"), out=lambda line: None)
    control_pause(actor="ops", reason="maintenance")
    daemon.tick(0)
    assert not Action.objects.exists()
    control_resume(actor="ops", reason="done")
    report = daemon.tick(1)
    action = Action.objects.get()
    assert action.idempotency_key.startswith(f"schedule:{schedule.pk}:")
    assert action.status == "SUCCESS"  # queued before the claim: run in the same tick
    assert "schedules queued 1 action(s)" in report.notes
