"""/metrics: Prometheus text derived from the database, for staff or a bearer token only."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestration.models import Action, ActionStatus
from orchestration.services.claim import action_claim_due
from orchestration.services.enqueue import action_enqueue
from orchestration.services.ledger import tick_record
from orchestration.services.results import action_mark_failure, action_mark_success
from tests.factories import hold_lease, post_social

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests-0xC0FFEE"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def token(settings):
    settings.AOL_METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client, token=TOKEN):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return samples(response.content.decode())


def test_metrics__anonymous_is_refused_with_401(client, token):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="aol-metrics"'
    assert b"aol_" not in response.content


def test_metrics__wrong_token_is_refused(client, token):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401


def test_metrics__any_token_is_refused_when_none_is_configured(client, settings):
    settings.AOL_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_metrics__non_staff_session_is_refused(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("viewer", password="x" * 12))
    assert client.get("/metrics").status_code == 401


def test_metrics__staff_session_gets_prometheus_text(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("ops", password="x" * 12, is_staff=True))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert samples(response.content.decode())[("aol_database_up", ())] == 1


def test_metrics__bearer_token_gets_prometheus_text(client, token):
    assert scrape(client)[("aol_database_up", ())] == 1


def test_metrics__queue_ticks_lease_and_outcomes_come_from_the_database(client, token):
    for key in ("a", "b", "c"):
        post_social(key=key)
    action_enqueue(action_type="DRAFT_SOCIAL", payload={"platform": "x", "brief": "b"}, idempotency_key="d")
    token_value = hold_lease(ttl_seconds=30)
    done, failed = action_claim_due(owner="test-host:1", token=token_value, limit=2)
    action_mark_success(action=done, token=token_value, actor="t", message="ok")
    action_mark_failure(action=failed, token=token_value, actor="t", error="boom", permanent=True)
    tick_record(
        duration_seconds=1.5,
        status="PARTIAL",
        attempted=2,
        succeeded=1,
        owner="test-host:1",
        token=token_value,
    )
    m = scrape(client)
    assert m[("aol_queue_depth", (("action_type", "POST_SOCIAL"), ("status", "PENDING")))] == 1
    assert m[("aol_queue_depth", (("action_type", "DRAFT_SOCIAL"), ("status", "PENDING")))] == 1
    assert m[("aol_queue_depth", (("action_type", "POST_SOCIAL"), ("status", "RUNNING")))] == 0
    assert m[("aol_actions_finished", (("action_type", "POST_SOCIAL"), ("outcome", "SUCCESS")))] == 1
    assert m[("aol_actions_finished", (("action_type", "POST_SOCIAL"), ("outcome", "DLQ")))] == 1
    assert m[("aol_ticks_total", (("status", "PARTIAL"),))] == 1
    assert m[("aol_ticks_total", (("status", "SUCCESS"),))] == 0
    assert m[("aol_last_tick_duration_seconds", ())] == pytest.approx(1.5, abs=0.01)
    assert 0 <= m[("aol_last_tick_age_seconds", ())] < 60
    assert m[("aol_lease_held", ())] == 1
    assert 0 < m[("aol_lease_expires_in_seconds", ())] <= 30
    assert m[("aol_lease_token", ())] == token_value
    assert m[("aol_control_proof_mode", ())] == 1


def test_metrics__empty_database_reports_zero_depth_and_no_lease(client, token):
    m = scrape(client)
    assert m[("aol_lease_held", ())] == 0
    assert ("aol_last_tick_age_seconds", ()) not in m
    assert m[("aol_queue_depth", (("action_type", "POST_SOCIAL"), ("status", "PENDING")))] == 0


def test_metrics__a_needs_review_action_is_exported(client, token):
    action = post_social(key="unknown-outcome")
    Action.objects.filter(pk=action.pk).update(status=ActionStatus.NEEDS_REVIEW)
    m = scrape(client)
    assert m[("aol_actions_finished", (("action_type", "POST_SOCIAL"), ("outcome", "NEEDS_REVIEW")))] == 1


def test_metrics__every_status_is_exported_once_per_action_type(client, token):
    m = scrape(client)
    exported = [
        dict(labels).get("status") or dict(labels).get("outcome")
        for name, labels in m
        if name in ("aol_queue_depth", "aol_actions_finished") and dict(labels)["action_type"] == "POST_SOCIAL"
    ]
    assert sorted(exported) == sorted(ActionStatus.values)


def test_metrics__environment_blocked_gauge_follows_the_newest_tick(client, token):
    token_value = hold_lease(owner="host:1")
    for status in ("SUCCESS", "BLOCKED"):
        tick_record(
            duration_seconds=0.0, status=status, attempted=0, succeeded=0, owner="host:1",
            token=token_value, notes="claiming paused: artifact store unavailable" if status == "BLOCKED" else "",
        )  # fmt: skip
        m = scrape(client)
        assert m[("aol_environment_blocked", (("reason", "artifact_store"),))] == (status == "BLOCKED")
    assert m[("aol_ticks_total", (("status", "BLOCKED"),))] == 1
