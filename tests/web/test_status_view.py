"""The status view and its JSON endpoint: who may see them, and that they tell the truth."""

import json

import pytest
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from orchestration.models import ActionStatus, TickLedger
from orchestration.services import status as status_service
from orchestration.services.control import control_kill, control_pause, control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from orchestration.services.lease import lease_acquire_or_renew
from orchestration.services.logs import log_write
from tests.console_fixtures import actions_with_status, client_for, dead_action

pytestmark = pytest.mark.django_db

STATUS_URL = reverse("orchestration:status")
JSON_URL = reverse("orchestration:status_json")


def snapshot(client: Client) -> dict:
    response = client.get(JSON_URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()


def tick(*, status="SUCCESS", attempted=0, succeeded=0, seconds=0.25, depth=None, ago_seconds=5):
    finished = timezone.now() - timezone.timedelta(seconds=ago_seconds)
    return TickLedger.objects.create(
        started_at=finished - timezone.timedelta(seconds=seconds),
        finished_at=finished,
        status=status,
        actions_attempted=attempted,
        actions_succeeded=succeeded,
        owner="host:1",
        queue_depth=depth or {},
    )


def test_status_view__anonymous_is_sent_to_login():
    response = Client().get(STATUS_URL)
    assert response.status_code == 302
    assert response.url == f"{reverse('admin:login')}?next={STATUS_URL}"


def test_status_json__anonymous_gets_401_json():
    response = Client().get(JSON_URL)
    assert response.status_code == 401
    assert response.json() == {"error": "authentication required"}


def test_status_view__non_staff_user_gets_403(non_staff):
    client = client_for(non_staff)
    assert client.get(STATUS_URL).status_code == 403
    assert client.get(JSON_URL).status_code == 403


def test_status_view__no_daemon_shows_red_lease_and_proof_mode(viewer):
    response = client_for(viewer).get(STATUS_URL)
    page = response.content.decode()
    assert response.status_code == 200
    assert 'class="light light-red"' in page and "no daemon running" in page
    assert 'class="banner mode-proof"' in page
    data = snapshot(client_for(viewer))
    assert data["lease"]["state"] == "red" and data["lease"]["holder"] == ""
    assert data["flags"]["mode"] == "PROOF"


def test_status_view__fresh_lease_is_green_with_holder_and_expiry(viewer):
    lease_acquire_or_renew(owner="web-1:4242", ttl_seconds=30)
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert 'class="light light-green"' in page
    assert "web-1:4242" in page
    data = snapshot(client_for(viewer))
    assert data["lease"]["state"] == "green"
    assert 25 < data["lease"]["expires_in_seconds"] <= 30


def test_status_view__lease_about_to_expire_is_amber(viewer):
    # With the default 30 s TTL and 5 s heartbeat, less than 20 s left means two missed heartbeats.
    lease_acquire_or_renew(owner="web-1:4242", ttl_seconds=12)
    assert 'class="light light-amber"' in client_for(viewer).get(STATUS_URL).content.decode()


def test_status_view__real_mode_is_unmistakable(viewer):
    control_set_proof_mode(enabled=False, actor="boss", reason="go live")
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert 'class="banner mode-real"' in page
    assert "actions act on the world for real" in page


def test_status_view__proof_forced_by_settings_says_so(viewer, settings):
    settings.AOL_PROOF_MODE = True
    control_set_proof_mode(enabled=False, actor="boss", reason="go live")
    data = snapshot(client_for(viewer))
    assert data["flags"]["mode"] == "PROOF" and data["flags"]["proof_forced_by_settings"] is True
    assert data["flags"]["requested_mode"] == "REAL" and data["flags"]["mode_forced_by"] == "AOL_PROOF_MODE=1"
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert '(forced by <span data-field="flags.mode_forced_by">AOL_PROOF_MODE=1</span>)' in page
    assert "a daemon started with these settings would be forced to PROOF" in page


def test_status_view__paused_and_killed_flags_are_shown(viewer):
    control_pause(actor="boss", reason="maintenance")
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert '<div id="banner-paused" class="banner banner-paused">' in page  # not hidden
    assert '<div id="banner-killed" class="banner banner-killed" hidden>' in page
    assert snapshot(client_for(viewer))["flags"]["paused"] is True


def test_status_view__a_live_daemon_that_is_killed_or_paused_is_not_called_running(viewer):
    lease_acquire_or_renew(owner="web-1:4242", ttl_seconds=30)
    assert snapshot(client_for(viewer))["lease"]["label"] == "running"
    control_pause(actor="boss", reason="maintenance")
    assert snapshot(client_for(viewer))["lease"]["label"] == "alive, paused: nothing new starts"
    control_kill(actor="boss", reason="stop everything")
    data = snapshot(client_for(viewer))
    assert data["lease"]["state"] == "green"  # the heartbeat is fine ...
    assert data["lease"]["label"] == "alive, killed: nothing runs until Revive"  # ... but nothing runs
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert '<strong id="lease-state-label" data-field="lease.label">alive, killed: nothing runs until Revive' in page


def test_status_view__last_tick_and_queue_metrics(viewer):
    tick(status="PARTIAL", attempted=3, succeeded=2, seconds=1.5, ago_seconds=30)
    for n in range(2):
        action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": f"m{n}"})
    dead_action()
    data = snapshot(client_for(viewer))
    assert data["last_tick"]["status"] == "PARTIAL"
    assert (data["last_tick"]["actions_attempted"], data["last_tick"]["actions_succeeded"]) == (3, 2)
    assert data["last_tick"]["duration_seconds"] == 1.5
    assert 29 <= data["last_tick_age_seconds"] < 60
    assert (data["counts"]["PENDING"], data["counts"]["DLQ"], data["counts"]["RUNNING"]) == (2, 1, 0)
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert '<td data-field="counts.PENDING">2</td>' in page
    assert '<td data-field="counts.DLQ" class="dlq-count">1</td>' in page
    assert "s ago" in page and "badge-PARTIAL" in page


def test_status_view__blocked_ticks_show_the_environment_banner_with_reason_and_since(viewer):
    tick(status="SUCCESS", ago_seconds=40)
    first = tick(status="BLOCKED", ago_seconds=30)
    tick(status="BLOCKED", ago_seconds=20)
    TickLedger.objects.filter(pk=tick(status="BLOCKED", ago_seconds=5).pk).update(
        notes="claiming paused: artifact store unavailable for 25s (next in 4s): Read-only file system"
    )
    data = snapshot(client_for(viewer))
    assert data["environment"]["blocked"] is True and data["environment"]["reason"] == "artifact_store"
    assert "Read-only file system" in data["environment"]["detail"]
    assert data["environment"]["since"] == first.started_at.isoformat()
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert '<div id="banner-blocked" class="banner banner-blocked">' in page  # not hidden
    assert "Read-only file system" in page

    tick(status="SUCCESS", ago_seconds=1)
    assert snapshot(client_for(viewer))["environment"] == {"blocked": False, "reason": "", "detail": "", "since": None}
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert '<div id="banner-blocked" class="banner banner-blocked" hidden>' in page


def test_status_view__ten_most_recent_logs_with_artifacts(viewer):
    for n in range(12):
        log_write(
            message=f"log line {n}", action_id=n + 1, artifact_ref=f"post_social/{n}.txt", artifact_sha256="ab" * 32
        )
    data = snapshot(client_for(viewer))
    assert [row["message"] for row in data["recent_logs"]] == [f"log line {n}" for n in range(11, 1, -1)]
    assert data["recent_logs"][0]["artifact_ref"] == "post_social/11.txt"
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert "log line 11" in page and "log line 1<" not in page
    assert "post_social/11.txt" in page and 'title="' + "ab" * 32 + '"' in page


def test_audit_view__operator_actions_say_who_what_when_why(viewer):
    control_pause(actor="alice", reason="investigating a spike")
    entry = snapshot(client_for(viewer))["operator_actions"][0]
    assert (entry["actor"], entry["verb"], entry["reason"]) == ("alice", "pause", "investigating a spike")
    assert entry["before"] == {"paused": False} and entry["after"] == {"paused": True} and entry["ts"]
    page = client_for(viewer).get(reverse("orchestration:audit")).content.decode()
    assert "investigating a spike" in page and "paused=false → paused=true" in page


def test_status_view__llm_not_configured_without_a_key(viewer, settings):
    settings.OPENAI_API_KEY = ""
    data = snapshot(client_for(viewer))
    assert data["llm"]["enabled"] is False and data["llm"]["reason"].startswith("not configured")
    assert "not configured: OPENAI_API_KEY is not set" in client_for(viewer).get(STATUS_URL).content.decode()


def test_status_view__never_renders_secrets(viewer, settings, monkeypatch):
    settings.OPENAI_API_KEY = "sk-live-THIS-MUST-NOT-LEAK-1234"
    settings.SECRET_KEY = "django-secret-THIS-MUST-NOT-LEAK-5678" * 2
    monkeypatch.setitem(connections["default"].settings_dict, "PASSWORD", "db-password-MUST-NOT-LEAK")
    client = client_for(viewer)
    for response in (client.get(STATUS_URL), client.get(JSON_URL)):
        body = response.content.decode()
        assert "MUST-NOT-LEAK" not in body
    data = snapshot(client)
    assert data["llm"]["key_present"] is True and data["llm"]["enabled"] is True
    if connections["default"].vendor == "postgresql":
        assert ":***@" in data["database"]


def test_status_view__charts_data(viewer):
    for n in range(55):
        tick(
            seconds=0.1 + n / 100,
            depth={"PENDING": n, "READY": 0, "RETRY": 0, "RUNNING": 0, "DLQ": 1},
            ago_seconds=60 - n,
        )
    tick(ago_seconds=2 * 3600, depth={"PENDING": 999})  # older than an hour: not in the depth chart
    charts = snapshot(client_for(viewer))["charts"]
    durations = charts["tick_durations"]
    assert len(durations) == 50
    assert durations[-1]["seconds"] == pytest.approx(0.64)  # newest last
    depth = charts["queue_depth"]
    assert depth[-1]["depth"]["PENDING"] == 54
    assert all(point["depth"]["PENDING"] != 999 for point in depth)
    assert charts["queue_depth_statuses"] == [
        "PENDING",
        "READY",
        "RETRY",
        "RUNNING",
        "DLQ",
        "NEEDS_REVIEW",
        "AWAITING_APPROVAL",
    ]
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert '<svg id="chart-ticks"' in page and '<svg id="chart-depth"' in page


def test_status_view__the_page_loads_nothing_from_other_sites(viewer):
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert "http://" not in page.replace("http://www.w3.org/", "")
    assert "https://" not in page and "//cdn" not in page


def test_status_view__static_script_is_served_locally(viewer):
    response = client_for(viewer).get("/static/orchestration/console.js")
    assert response.status_code == 200
    assert b"fetch(jsonUrl" in b"".join(response.streaming_content)


def test_status_view__adapters_refusing_real_mode_are_named(viewer):
    data = snapshot(client_for(viewer))
    refused = next(a for a in data["adapters"] if a["action_type"] == "DRAFT_SOCIAL")
    assert refused["supports_real"] is False
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert "would be <strong>refused</strong>" in page and "<strong>DRAFT_SOCIAL</strong>: " in page


def test_status_view__controls_say_when_the_user_lacks_permission(viewer, operator):
    viewer_page = client_for(viewer).get(STATUS_URL).content.decode()
    assert "You lack <code>orchestration.pause_daemon</code>" in viewer_page
    operator_page = client_for(operator).get(STATUS_URL).content.decode()
    assert "orchestration.pause_daemon</code>" not in operator_page
    assert "You lack <code>orchestration.switch_mode</code>" in operator_page


def test_status_view__is_linked_from_admin_index_and_header(viewer):
    client = client_for(viewer)
    index = client.get(reverse("admin:index")).content.decode()
    assert f'<a href="{STATUS_URL}">AOL status view' in index
    changelist = client.get(reverse("admin:orchestration_action_changelist")).content.decode()
    assert f'<a href="{STATUS_URL}" id="aol-status-header-link">AOL status</a>' in changelist


def test_status_view__cannot_be_framed_or_cached(viewer):
    response = client_for(viewer).get(STATUS_URL)
    assert response["X-Frame-Options"] == "DENY"
    assert "no-store" in response["Cache-Control"]
    assert "no-store" in client_for(viewer).get(JSON_URL)["Cache-Control"]


def test_status_json__is_valid_json_with_the_same_snapshot_as_the_page(viewer):
    response = client_for(viewer).get(STATUS_URL)
    embedded = response.content.decode().split('<script id="aol-snapshot" type="application/json">', 1)[1]
    embedded = json.loads(embedded.split("</script>", 1)[0])
    assert set(embedded) == set(snapshot(client_for(viewer)))


def test_status_view__links_to_the_diagnostics_page(viewer):
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert f'href="{reverse("orchestration:diagnostics")}" id="diagnostics-link"' in page


def test_actions_view__enqueue_form_starts_with_a_post_social_that_needs_no_llm(viewer):
    page = client_for(viewer).get(reverse("orchestration:actions")).content.decode()
    assert '<option value="POST_SOCIAL" selected>POST_SOCIAL</option>' in page


# --- Queue counts at scale (issue 6): exact where it matters, estimates labelled ---------------------------


def test_status_view__every_status_has_a_row_and_exact_counts_carry_no_label(viewer):
    actions_with_status(ActionStatus.READY, 2)
    actions_with_status(ActionStatus.SUCCESS, 1234)
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert '<td data-field="counts.READY">2</td>' in page
    assert '<td data-field="counts.SUCCESS">1,234</td>' in page
    assert '<p id="counts-note" class="help" hidden></p>' in page
    assert "about " not in page.split('id="card-queue"')[1].split("</section>")[0]


@pytest.mark.postgres_only
def test_status_view__an_estimated_count_says_about_and_why(viewer, analyse, monkeypatch):
    monkeypatch.setattr(status_service, "EXACT_COUNT_LIMIT", 10)
    actions_with_status(ActionStatus.SUCCESS, 30)
    actions_with_status(ActionStatus.DLQ, 2)
    analyse()
    client = client_for(viewer)
    data = snapshot(client)
    assert data["counts_estimated"] == ["SUCCESS"] and data["counts"]["DLQ"] == 2
    page = client.get(STATUS_URL).content.decode()
    success = page.split('<td data-field="counts.SUCCESS"')[1].split("</td>")[0]
    assert 'class="estimate"' in success and f">about {data['counts']['SUCCESS']:,}" in success
    assert "Estimated, not counted: SUCCESS." in success  # the tooltip
    assert '<p id="counts-note" class="help">Estimated, not counted: SUCCESS.' in page
    assert '<td data-field="counts.DLQ" class="dlq-count">2</td>' in page  # open: exact, unlabelled


def test_status_json__query_count_is_pinned(viewer, django_assert_num_queries):
    """Bounded: one query per panel whatever the table sizes (session, user, flags, lease, ticks, counts, LLM…)."""
    tick(status="SUCCESS", depth={"PENDING": 1})
    dead_action()
    client = client_for(viewer)
    client.get(JSON_URL)  # fills the storage-size cache (re-measured once a minute)
    statistics = 1 if connections["default"].vendor == "postgresql" else 0  # pg_class / pg_stats
    with django_assert_num_queries(18 + statistics):
        assert client.get(JSON_URL).status_code == 200
