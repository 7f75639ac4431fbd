"""The one adapter registry: an AOL_EXTRA_ADAPTERS adapter is known to every entry point and report."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from orchestration.models import Action, Schedule
from orchestration.services.schedules import schedule_clean, schedule_fire_due, schedule_period_next
from orchestration.services.status import status_snapshot
from tests.fake_adapters import FAKE_ADAPTERS

pytestmark = pytest.mark.django_db

METRICS_TOKEN = "registry-metrics-token-0123456789"


@pytest.fixture(autouse=True)
def extra_adapters(settings):
    settings.AOL_EXTRA_ADAPTERS = FAKE_ADAPTERS  # HANG, CRASH, …: not built in


def test_adapters_all__an_extra_adapter_can_be_scheduled_and_its_schedule_fires():
    schedule = Schedule(name="drill", action_type="HANG", payload_template={"seconds": 0}, interval_seconds=60)
    schedule_clean(schedule=schedule)
    schedule.save()
    past_period = schedule_period_next(schedule=schedule, after=timezone.now() - timedelta(seconds=150))
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=past_period)

    report = schedule_fire_due()

    assert report.errors == []
    assert list(Action.objects.values_list("action_type", "payload")) == [("HANG", {"seconds": 0})]


def test_adapters_all__an_extra_adapter_is_in_metrics_and_the_status_snapshot(client, settings):
    settings.AOL_METRICS_TOKEN = METRICS_TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert response.status_code == 200
    labelled = {
        (sample.name, sample.labels.get("action_type"))
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }
    # No HANG action exists: the type is exported because it is registered, like the built-ins.
    assert ("aol_queue_depth", "HANG") in labelled and ("aol_actions_finished", "HANG") in labelled

    adapters = {adapter["action_type"]: adapter for adapter in status_snapshot(detail=True)["adapters"]}
    assert "HANG" in adapters


def test_adapters_all__an_extra_adapter_replaces_the_built_in_of_its_type_everywhere(settings):
    settings.AOL_EXTRA_ADAPTERS = ["tests.fake_adapters.RealPostSocialAdapter"]  # POST_SOCIAL that can run REAL
    adapters = {adapter["action_type"]: adapter for adapter in status_snapshot(detail=True)["adapters"]}
    assert adapters["POST_SOCIAL"]["supports_real"] is True
