"""The lease admin's state badge: one lease-health reading, on the database's clock."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from orchestration.dbclock import DbNow
from orchestration.models import Lease
from orchestration.sentinels import FAIL, SentinelRun, check_daemon
from orchestration.services.lease import lease_acquire_or_renew
from orchestration.services.status import status_snapshot
from tests.console_fixtures import client_for

pytestmark = pytest.mark.django_db

LEASE_CHANGELIST = reverse("admin:orchestration_lease_changelist")
METRICS_TOKEN = "lease-metrics-token-0123456789"


@pytest.mark.parametrize(
    ("expires_in", "app_clock_offset", "state"),
    [
        # Fresh by the database's clock, expired by an application clock 10 minutes fast.
        (timedelta(seconds=30), timedelta(minutes=10), "green"),
        # Expired by the database's clock, alive by an application clock 10 minutes slow.
        (timedelta(seconds=-1), timedelta(minutes=-10), "red"),
    ],
)
def test_lease_admin__state_badge_follows_the_database_clock_as_the_console_does(
    superuser, monkeypatch, expires_in, app_clock_offset, state
):
    lease_acquire_or_renew(owner="host-a:99", ttl_seconds=30)
    Lease.objects.update(renewed_at=DbNow(), expires_at=DbNow() + expires_in)
    client = client_for(superuser)
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + app_clock_offset)

    page = client.get(LEASE_CHANGELIST).content.decode()

    assert f'class="light light-{state}"' in page
    assert status_snapshot()["lease"]["state"] == state


@pytest.mark.django_db(transaction=True)
def test_lease_health__admin_console_metrics_and_sentinel_agree_on_late_heartbeats(superuser, client, settings):
    settings.AOL_METRICS_TOKEN = METRICS_TOKEN
    lease_acquire_or_renew(owner="host-a:99", ttl_seconds=30)
    # Two 5 s heartbeats missed (the default settings): alive, but its holder is in trouble.
    Lease.objects.update(renewed_at=DbNow() - timedelta(seconds=12), expires_at=DbNow() + timedelta(seconds=18))

    assert 'class="light light-amber"' in client_for(superuser).get(LEASE_CHANGELIST).content.decode()
    assert status_snapshot()["lease"]["state"] == "amber"
    metrics = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}").content.decode()
    assert "aol_lease_held 1.0" in metrics
    status, detail, _ = check_daemon(SentinelRun(require_daemon=True))
    assert status == FAIL and "heartbeats are late" in detail
