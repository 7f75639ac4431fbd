"""What a REAL success made in the world (remote id and URL): recorded with the SUCCESS, shown everywhere."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orchestration.models import REMOTE_ID_MAX_LENGTH, Action, ActionStatus
from orchestration.services import planner
from orchestration.services.claim import action_claim_due
from orchestration.services.results import Success, action_mark_success, action_mark_success_many
from tests.api.conftest import api_client, make_token  # noqa: F401  (fixtures)
from tests.console_fixtures import client_for, viewer  # noqa: F401  (fixtures)
from tests.factories import OWNER, hold_lease, post_social

pytestmark = pytest.mark.django_db


def _succeed(*, remote_id: str = "", remote_url: str = "") -> Action:
    post_social(f"k-{Action.objects.count()}")
    token = hold_lease()
    (action,) = action_claim_due(owner=OWNER, token=token, limit=1)
    action_mark_success(
        action=action, token=token, actor=OWNER, message="REAL: posted", remote_id=remote_id, remote_url=remote_url
    )
    action.refresh_from_db()
    return action


def test_action_mark_success__records_remote_id_and_url():
    action = _succeed(remote_id="109876543210", remote_url="https://social.example/@brand/109876543210")
    assert action.status == ActionStatus.SUCCESS
    assert (action.remote_id, action.remote_url) == ("109876543210", "https://social.example/@brand/109876543210")


def test_action_mark_success_many__each_action_gets_its_own_remote_in_the_one_update():
    for key in ("a", "b", "c"):
        post_social(key)
    token = hold_lease()
    actions = action_claim_due(owner=OWNER, token=token, limit=3)
    successes = [
        Success(actions[0], "posted", remote_id="id-a", remote_url="https://x.example/a"),
        Success(actions[1], "posted"),  # nothing remote (a PROOF run)
        Success(actions[2], "posted", remote_id="id-c"),
    ]
    with CaptureQueriesContext(connection) as queries:
        action_mark_success_many(successes=successes, token=token, actor=OWNER)
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1, updates
    got = {a.idempotency_key: (a.status, a.remote_id, a.remote_url) for a in Action.objects.all()}
    assert got == {
        "a": (ActionStatus.SUCCESS, "id-a", "https://x.example/a"),
        "b": (ActionStatus.SUCCESS, "", ""),
        "c": (ActionStatus.SUCCESS, "id-c", ""),
    }


def test_action_mark_success__an_overlong_id_is_cut_and_an_overlong_url_dropped():
    action = _succeed(remote_id="i" * 1000, remote_url="https://x.example/" + "u" * 3000)
    assert (action.remote_id, action.remote_url) == ("i" * REMOTE_ID_MAX_LENGTH, "")


def test_action_public__remote_is_null_until_a_real_success_names_it():
    post_social("nothing-yet")
    assert planner.action_public(action=Action.objects.get())["remote"] is None
    action = _succeed(remote_id="<abc@aicmo.aol>")
    assert planner.action_public(action=action, detail=False)["remote"] == {"id": "<abc@aicmo.aol>", "url": None}


def test_api_action__shows_the_remote_id_and_url(api_client):  # noqa: F811
    action = _succeed(remote_id="42", remote_url="https://x.example/42")
    body = api_client("read").get(f"/api/v1/actions/{action.pk}").json()
    assert body["remote"] == {"id": "42", "url": "https://x.example/42"}


def test_action_page__remote_url_is_a_safe_link(viewer):  # noqa: F811
    action = _succeed(remote_id="109", remote_url="https://social.example/@brand/109")
    page = client_for(viewer).get(reverse("orchestration:action", args=[action.pk])).content.decode()
    assert '<dd class="mono small" id="action-remote-id">109</dd>' in page
    assert (
        '<a href="https://social.example/@brand/109" rel="noopener noreferrer" target="_blank">'
        "https://social.example/@brand/109</a>" in page
    )


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,<b>x</b>", "//evil.example/x", "ftp://f/x"])
def test_action_page_and_admin__a_url_that_is_not_http_is_shown_as_text_never_as_a_link(viewer, url):  # noqa: F811
    action = _succeed(remote_id="1", remote_url=url)
    client = client_for(viewer)
    page = client.get(reverse("orchestration:action", args=[action.pk])).content.decode()
    shown = page.split('id="action-remote-url">')[1].split("</dd>")[0]
    assert "<a " not in shown and "(not a web link)" in shown and "<b>" not in shown
    admin_page = client.get(reverse("admin:orchestration_action_change", args=[action.pk])).content.decode()
    assert 'href="javascript' not in admin_page and 'href="data:' not in admin_page
    assert "What the REAL run made" in admin_page


def test_admin_change__shows_remote_id_and_links_its_url(viewer):  # noqa: F811
    action = _succeed(remote_id="event-7", remote_url="http://127.0.0.1:9/events/7")
    page = client_for(viewer).get(reverse("admin:orchestration_action_change", args=[action.pk])).content.decode()
    assert "event-7" in page
    assert (
        '<a href="http://127.0.0.1:9/events/7" rel="noopener noreferrer" target="_blank">'
        "http://127.0.0.1:9/events/7</a>" in page
    )
