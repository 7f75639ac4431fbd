"""The console's views (issue 15): navigation, Actions with keyset pages, one action's page, Attention,
Calendar, Schedules and limits, Audit; controls return to the page they came from, errors at the top."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orchestration.models import Action, ActionStatus, AuditEntry, ExecutionLog, Schedule
from orchestration.services.control import control_pause
from orchestration.services.enqueue import action_enqueue
from orchestration.services.logs import log_write
from tests.console_fixtures import actions_with_status, client_for, dead_action

pytestmark = pytest.mark.django_db

VIEWS = ("status", "actions", "approvals", "attention", "calendar", "schedules", "audit")


@pytest.mark.parametrize("name", VIEWS)
def test_views__each_renders_with_the_navigation_marking_where_you_are(viewer, name):
    dead_action()
    page = client_for(viewer).get(reverse(f"orchestration:{name}")).content.decode()
    assert 'id="aol-nav"' in page
    for other in VIEWS:
        assert f'href="{reverse(f"orchestration:{other}")}" id="nav-{other}"' in page
    assert f'id="nav-{name}" aria-current="page"' in page
    # The attention badge counts the DLQ action, on every view.
    assert '<span class="nav-badge" title="1 waiting">1</span>' in page
    # No inline script or style on the console's own markup (a strict CSP must hold).
    body = page.split('<div id="content"', 1)[1]
    assert "<script>" not in body and ' style="' not in body


@pytest.mark.parametrize("name", VIEWS)
def test_views__anonymous_goes_to_the_login_page(client, name):
    response = client.get(reverse(f"orchestration:{name}"))
    assert response.status_code == 302 and "/admin/login/" in response.url


# --- Actions --------------------------------------------------------------------------------------------


def test_actions__keyset_pages_newest_first_without_offset_or_count(viewer):
    actions_with_status(ActionStatus.PENDING, 60, prefix="p")
    client = client_for(viewer)
    with CaptureQueriesContext(connection) as captured:
        first = client.get(reverse("orchestration:actions")).content.decode()
    ids = list(Action.objects.order_by("-id").values_list("id", flat=True))
    assert f'data-action-id="{ids[0]}"' in first and f'data-action-id="{ids[49]}"' in first
    assert f'data-action-id="{ids[50]}"' not in first
    assert f'href="?before={ids[49]}" class="button" id="page-next"' in first
    second = client.get(reverse("orchestration:actions"), {"before": ids[49]}).content.decode()
    assert f'data-action-id="{ids[50]}"' in second and f'data-action-id="{ids[59]}"' in second
    assert 'id="page-next"' not in second and 'id="page-first"' in second
    on_actions = [q["sql"].upper() for q in captured.captured_queries if "AOL_ACTIONS" in q["sql"].upper()]
    assert not [sql for sql in on_actions if "OFFSET" in sql]
    # The only counts are per status with a WHERE (the status chips), as the Overview does.
    assert all("WHERE" in sql for sql in on_actions if "COUNT(" in sql)


def test_actions__filter_by_status_type_and_key(viewer):
    dead = dead_action()
    waiting, _ = action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key="k-" + "x" * 190)
    client = client_for(viewer)
    page = client.get(reverse("orchestration:actions"), {"status": "DLQ"}).content.decode()
    assert f'data-action-id="{dead.pk}"' in page and f'data-action-id="{waiting.pk}"' not in page
    page = client.get(reverse("orchestration:actions"), {"action_type": "SLEEP"}).content.decode()
    assert f'data-action-id="{waiting.pk}"' in page and f'data-action-id="{dead.pk}"' not in page
    page = client.get(reverse("orchestration:actions"), {"key": waiting.idempotency_key}).content.decode()
    assert f'data-action-id="{waiting.pk}"' in page and f'data-action-id="{dead.pk}"' not in page
    page = client.get(reverse("orchestration:actions"), {"key": f"#{dead.pk}"}).content.decode()
    assert f'data-action-id="{dead.pk}"' in page and f'data-action-id="{waiting.pk}"' not in page


def test_actions__bad_filter__error_beside_it_and_at_the_top_nothing_listed(viewer):
    dead_action()
    page = client_for(viewer).get(reverse("orchestration:actions"), {"status": "NOPE", "before": "x"}).content.decode()
    assert 'id="form-errors" role="alert"' in page and 'href="#filter-form"' in page
    assert "Select a valid choice. NOPE is not one of the available choices." in page
    assert "Correct the filter above." in page and "data-action-id" not in page.split('id="actions-table"')[1]


# --- One action -------------------------------------------------------------------------------------------


def test_action_page__shows_its_timeline_artifact_and_only_the_verbs_that_apply(viewer):
    dead = dead_action()
    Action.objects.filter(pk=dead.pk).update(last_error="PermanentAdapterError: " + "e" * 500)
    log_write(action_id=dead.pk, message="attempt 1 failed: timeout", level="WARNING", actor="host:1:abcd")
    log_write(
        action_id=dead.pk, message="PROOF artifact written", artifact_ref="post_social/1.txt", artifact_sha256="ab" * 32
    )
    log_write(action_id=dead.pk + 1000, message="someone else's row")
    page = client_for(viewer).get(reverse("orchestration:action", args=[dead.pk])).content.decode()
    timeline = page.split('id="timeline-table"')[1].split("</table>")[0]
    assert "Enqueued as POST_SOCIAL" in timeline and "attempt 1 failed: timeout" in timeline
    assert "post_social/1.txt" in timeline and "someone else" not in timeline
    assert timeline.index("Enqueued as") < timeline.index("attempt 1") < timeline.index("PROOF artifact")
    assert 'id="action-last-error"' in page and "e" * 500 in page
    # A DLQ action can be retried or discarded, not cancelled or requeued.
    assert 'id="verb-retry"' in page and 'id="verb-discard"' in page
    assert 'id="verb-cancel"' not in page and 'id="verb-requeue"' not in page
    assert "You lack <code>orchestration.manage_dlq</code>" in page


def test_action_page__unknown_action_is_404(viewer):
    assert client_for(viewer).get(reverse("orchestration:action", args=[999999])).status_code == 404


def test_action_page__cancel_returns_to_the_action(operator):
    action, _ = action_enqueue(action_type="SLEEP", payload={"seconds": 0})
    url = reverse("orchestration:action", args=[action.pk])
    response = client_for(operator).post(
        reverse("orchestration:queue_actions", args=["cancel"]),
        {"queue-action_ids": str(action.pk), "queue-reason": "wrong copy", "return_to": url},
        follow=True,
    )
    assert response.redirect_chain == [(url, 302)]
    assert "Cancel: 1 action cancelled." in response.content.decode()
    assert Action.objects.get(pk=action.pk).status == ActionStatus.CANCELLED
    assert 'id="no-controls"' in response.content.decode()


def test_action_page__missing_reason__error_beside_the_verb_and_at_the_top(operator):
    dead = dead_action()
    url = reverse("orchestration:action", args=[dead.pk])
    response = client_for(operator).post(
        reverse("orchestration:dlq", args=["retry"]),
        {"dlq-scope": "selected", "dlq-action_ids": str(dead.pk), "dlq-reason": "", "return_to": url},
    )
    page = response.content.decode()
    assert response.status_code == 200 and 'id="action-summary"' in page
    assert 'id="form-errors" role="alert"' in page and 'href="#verb-retry"' in page
    retry = page.split('id="verb-retry"')[1].split("</form>")[0]
    assert "Give a reason" in retry and "Give a reason" not in page.split('id="verb-discard"')[1]
    assert Action.objects.get(pk=dead.pk).status == ActionStatus.DLQ and not AuditEntry.objects.exists()


def test_controls__an_off_site_return_to_is_ignored(operator):
    dead = dead_action()
    response = client_for(operator).post(
        reverse("orchestration:dlq", args=["retry"]),
        {"dlq-scope": "selected", "dlq-action_ids": str(dead.pk), "dlq-reason": "r", "return_to": "//evil.example/"},
    )
    assert response.status_code == 302 and response.url == reverse("orchestration:attention")


# --- Attention ---------------------------------------------------------------------------------------------


def test_attention__retry_selected_returns_to_attention(operator):
    dead = dead_action()
    url = reverse("orchestration:attention")
    response = client_for(operator).post(
        reverse("orchestration:dlq", args=["retry"]),
        {"dlq-scope": "selected", "dlq-action_ids": str(dead.pk), "dlq-reason": "fixed the token", "return_to": url},
        follow=True,
    )
    assert response.redirect_chain == [(url, 302)]
    assert "No action needs attention." in response.content.decode()
    assert Action.objects.get(pk=dead.pk).status == ActionStatus.PENDING


def test_attention__nothing_selected__error_at_the_top_and_beside_the_form(operator):
    dead_action()
    page = (
        client_for(operator)
        .post(reverse("orchestration:dlq", args=["retry"]), {"dlq-scope": "selected", "dlq-reason": "r"})
        .content.decode()
    )
    assert 'id="form-errors" role="alert"' in page and 'href="#dlq-form"' in page
    assert page.count("Select at least one DLQ action or NEEDS_REVIEW action, or choose all.") == 2


# --- Calendar ------------------------------------------------------------------------------------------------


def test_calendar__lists_future_actions_and_schedule_firings_by_day(viewer):
    now = timezone.now()
    tomorrow = (now + timedelta(days=1)).replace(hour=9, minute=30, second=0, microsecond=0)
    later, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "x", "message": "launch"},
        not_before=tomorrow,
        idempotency_key="launch-tweet",
    )
    due_now = dead_action()  # not waiting: not listed
    Schedule.objects.create(name="daily digest", action_type="SLEEP", payload_template={"seconds": 0}, cron="0 8 * * *")
    page = client_for(viewer).get(reverse("orchestration:calendar")).content.decode()
    day = page.split(f'data-day="{tomorrow.date().isoformat()}"')[1].split("</section>")[0]
    assert f">#{later.pk}</a>" in day and "09:30" in day and "launch-tweet" in day
    assert "daily digest" in day and "08:00" in day
    assert f"#{due_now.pk}<" not in page
    # Seven days, each with one firing of the daily schedule (today's 08:00 may have passed).
    assert page.count("daily digest") in (6, 7)


def test_calendar__next_week_and_a_bad_start(viewer):
    client = client_for(viewer)
    start = (timezone.now() + timedelta(days=7)).date()
    page = client.get(reverse("orchestration:calendar"), {"start": start.isoformat()}).content.decode()
    assert f'data-day="{start.isoformat()}"' in page
    assert f'data-day="{(start + timedelta(days=6)).isoformat()}"' in page
    assert f'data-day="{(start + timedelta(days=7)).isoformat()}"' not in page
    page = client.get(reverse("orchestration:calendar"), {"start": "31/12/2026"}).content.decode()
    assert 'id="form-errors" role="alert"' in page and "Enter a valid date." in page


# --- Audit ---------------------------------------------------------------------------------------------------


def test_audit__filters_by_actor_and_outcome_and_pages(viewer):
    for n in range(55):
        control_pause(actor="alice" if n % 2 else "bob", reason=f"reason {n}")
    client = client_for(viewer)
    page = client.get(reverse("orchestration:audit")).content.decode()
    assert "reason 54" in page and "reason 4<" not in page and 'id="page-next"' in page
    page = client.get(reverse("orchestration:audit"), {"actor": "alice", "outcome": "NO_CHANGE"}).content.decode()
    table = page.split('id="audit-table"')[1].split("</table>")[0]
    assert "reason 1<" in table and "reason 2<" not in table and "bob" not in table


# --- One date format ------------------------------------------------------------------------------------------


def test_dates__one_format_with_the_zone_on_every_view(viewer):
    dead = dead_action()
    Action.objects.filter(pk=dead.pk).update(updated_at=datetime(2026, 11, 30, 19, 7, 5, tzinfo=UTC))
    ExecutionLog.objects.filter(action_id=dead.pk).update(ts=datetime(2026, 11, 30, 19, 7, 6, tzinfo=UTC))
    client = client_for(viewer)
    assert "2026-11-30 19:07:05 UTC" in client.get(reverse("orchestration:attention")).content.decode()
    assert "2026-11-30 19:07:05 UTC" in client.get(reverse("orchestration:actions")).content.decode()
    page = client.get(reverse("orchestration:action", args=[dead.pk])).content.decode()
    assert "2026-11-30 19:07:05 UTC" in page
