"""The approval page: the post as it will read with its character count, and editing the text before approving."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from orchestration.daemon import Daemon, DaemonConfig
from orchestration.models import Action, ActionStatus, AuditEntry, ExecutionLog
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.console_fixtures import client_for, denied_entries
from tests.fake_adapters import FLOW_ADAPTERS

pytestmark = pytest.mark.django_db

MESSAGE = "Spring sale <b>starts</b> today"
EDITED = "Spring sale starts tomorrow, 9am"


@pytest.fixture
def approver(operator):
    operator.user_permissions.add(Permission.objects.get(codename="approve_action"))
    return type(operator).objects.get(pk=operator.pk)


def park(payload: dict, key: str = "sale-1", action_type: str = "POST_SOCIAL") -> Action:
    action = action_enqueue(action_type=action_type, payload=payload, idempotency_key=key)[0]
    Daemon(DaemonConfig.from_settings(owner="test:1"), out=lambda line: None).tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL, action.last_error
    return action


@pytest.fixture
def awaiting(settings):
    settings.AOL_EXTRA_ADAPTERS = FLOW_ADAPTERS
    control_set_proof_mode(enabled=False, actor="setup", reason="REAL")
    return park({"platform": "threads", "account": "acme", "message": MESSAGE})


def page_of(client, action: Action) -> str:
    return client.get(reverse("orchestration:approval", args=[action.pk])).content.decode()


def edit(client, action: Action, message: str, reason: str = "date moved"):
    url = reverse("orchestration:approval_decide", args=[action.pk, "edit"])
    return client.post(url, {"edit-message": message, "edit-reason": reason})


def frozen(action: Action) -> tuple:
    action.refresh_from_db()
    return action.payload, action.approval_sha256, ExecutionLog.objects.filter(action_id=action.pk).count()


def test_approval_page__shows_the_post_as_it_will_read_with_its_character_count(awaiting, approver):
    page = page_of(client_for(approver), awaiting)
    assert '<pre class="aol-json" id="post-text">Spring sale &lt;b&gt;starts&lt;/b&gt; today</pre>' in page
    assert f">{len(MESSAGE)} / 500 characters</p>" in page
    assert 'id="edit-form"' in page and "Spring sale &lt;b&gt;starts&lt;/b&gt; today</textarea>" in page


def test_approval_page__over_the_limit_says_so(awaiting, approver):
    Action.objects.filter(pk=awaiting.pk).update(payload={**awaiting.payload, "message": "x" * 501})
    page = page_of(client_for(approver), awaiting)
    assert "501 / 500 characters: too long for threads" in page


def test_edit__rebinds_the_hash_shows_the_new_text_and_audits(awaiting, approver):
    old_sha = awaiting.approval_sha256
    response = edit(client_for(approver), awaiting, EDITED)
    assert response.status_code == 302
    assert response.url == reverse("orchestration:approval", args=[awaiting.pk])
    awaiting.refresh_from_db()
    assert awaiting.payload["message"] == EDITED and awaiting.approval_sha256 != old_sha
    page = page_of(client_for(approver), awaiting)
    assert f'id="post-text">{EDITED}</pre>' in page and f">{len(EDITED)} / 500 characters</p>" in page
    assert f'name="approve-sha256" value="{awaiting.approval_sha256}"' in page
    assert 'id="artifact-verified"' in page
    entry = AuditEntry.objects.get(verb="edit before approval")
    assert (entry.actor, entry.reason, entry.before["message"], entry.after["message"]) == (
        "oper",
        "date moved",
        MESSAGE,
        EDITED,
    )


def test_edit__too_long__clear_error_nothing_written(awaiting, approver):
    before = frozen(awaiting)
    response = edit(client_for(approver), awaiting, "y" * 501)
    page = response.content.decode()
    assert response.status_code == 200
    assert "the edited text is not valid: &#x27;message&#x27; is 501 characters; threads allows at most 500" in page
    assert frozen(awaiting) == before and not AuditEntry.objects.filter(verb="edit before approval").exists()


def test_edit__without_a_reason__refused_nothing_written(awaiting, approver):
    before = frozen(awaiting)
    page = edit(client_for(approver), awaiting, EDITED, reason="").content.decode()
    assert "Give a reason" in page and frozen(awaiting) == before


def test_edit__without_the_approve_permission__403_audited_nothing_written(awaiting, operator):
    before = frozen(awaiting)
    response = edit(client_for(operator), awaiting, EDITED, reason="let me")
    assert response.status_code == 403 and "orchestration.approve_action" in response.content.decode()
    assert frozen(awaiting) == before
    assert denied_entries("edit before approval").get().target == f"action #{awaiting.pk}"


def test_approval_page__send_email_shows_the_email_and_edits_subject_and_body(settings, approver):
    settings.AOL_EXTRA_ADAPTERS = []
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    control_set_proof_mode(enabled=False, actor="setup", reason="REAL")
    action = park({"to": ["ceo@example.com", "cfo@example.com"], "subject": "Q3", "body": "Plan."}, "m-1", "SEND_EMAIL")
    page = page_of(client_for(approver), action)
    assert "ceo@example.com, cfo@example.com" in page and 'id="email-subject">Q3<' in page
    assert 'name="edit-subject"' in page and 'name="edit-body"' in page
    url = reverse("orchestration:approval_decide", args=[action.pk, "edit"])
    response = client_for(approver).post(url, {"edit-subject": "Q3 final", "edit-body": "Plan.", "edit-reason": "r"})
    assert response.status_code == 302
    action.refresh_from_db()
    assert action.payload["subject"] == "Q3 final"


def test_action_page__says_it_was_edited_and_when_approvers_were_told(awaiting, approver):
    edit(client_for(approver), awaiting, EDITED)
    Action.objects.filter(pk=awaiting.pk).update(approval_notified_at=awaiting.created_at)
    page = client_for(approver).get(reverse("orchestration:action", args=[awaiting.pk])).content.decode()
    assert 'id="approval-edited"' in page and 'id="approval-notified"' in page
    assert "review, edit or decide" in page


def test_admin__links_an_awaiting_action_to_the_console_approval_page_and_shows_the_planned_payload(
    awaiting, superuser
):
    edit(client_for(superuser), awaiting, EDITED)
    page = client_for(superuser).get(reverse("admin:orchestration_action_change", args=[awaiting.pk])).content.decode()
    assert f'href="{reverse("orchestration:approval", args=[awaiting.pk])}"' in page
    assert "Spring sale &lt;b&gt;starts&lt;/b&gt; today" in page  # the planner's payload, read-only
