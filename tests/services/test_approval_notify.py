"""Approval notifications: email (a real SMTP server on loopback) and a signed webhook (a real receiver), once each."""

import email
import email.policy
import json

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from orchestration.daemon import Daemon, DaemonConfig
from orchestration.models import Action, ActionStatus, ExecutionLog
from orchestration.services.approval_notify import approval_notify_pending, approvers_emails
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until
from tests.fake_adapters import FLOW_ADAPTERS
from tests.webhook_server import SECRET, signature_valid

pytestmark = pytest.mark.django_db

MESSAGE = "Launch day: we ship at noon"


@pytest.fixture(autouse=True)
def real_post_social(settings):
    settings.AOL_EXTRA_ADAPTERS = FLOW_ADAPTERS
    settings.AOL_CONSOLE_URL = "https://aol.example.com"
    control_set_proof_mode(enabled=False, actor="test", reason="testing approval notifications")


@pytest.fixture
def approvers(django_user_model):
    """Who may approve (directly, through a group, superuser) and who may not (no permission, inactive, no email)."""
    permission = Permission.objects.get(content_type__app_label="orchestration", codename="approve_action")
    direct = django_user_model.objects.create_user("ann", "ann@example.com", is_staff=True)
    direct.user_permissions.add(permission)
    group = Group.objects.create(name="Approvers")
    group.permissions.add(permission)
    django_user_model.objects.create_user("bob", "bob@example.com", is_staff=True).groups.add(group)
    django_user_model.objects.create_superuser("root", "root@example.com")
    django_user_model.objects.create_user("cy", "cy@example.com", is_staff=True)  # no permission
    gone = django_user_model.objects.create_user("dee", "dee@example.com", is_staff=True, is_active=False)
    gone.user_permissions.add(permission)
    django_user_model.objects.create_user("eve", "", is_staff=True).user_permissions.add(permission)
    return ["ann@example.com", "bob@example.com", "root@example.com"]


def tick(n: int = 0):
    daemon = Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None)
    return daemon.tick(n)


def park(count: int = 1) -> list[Action]:
    actions = [
        action_enqueue(
            action_type="POST_SOCIAL",
            payload={"platform": "threads", "account": "acme", "message": f"{MESSAGE} ({n})"},
            idempotency_key=f"launch-{n}",
        )[0]
        for n in range(count)
    ]
    for n in range(0, count, 3):  # AOL_MAX_ACTIONS_PER_TICK is 3
        tick(n)
    for action in actions:
        action.refresh_from_db()
        assert action.status == ActionStatus.AWAITING_APPROVAL, action.last_error
    return actions


def link(pk: int) -> str:
    return "https://aol.example.com" + reverse("orchestration:approval", args=[pk])


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_approvers_emails__permission_directly_through_a_group_or_superuser__active_with_an_address(approvers):
    assert approvers_emails() == approvers


def test_notify__one_email_per_approver_says_what_would_be_posted_and_links_to_the_approval_page(
    approvers, smtp_settings, smtp_server
):
    (action,) = park()
    report = approval_notify_pending(actor="test:1")

    assert report.announced == [action.pk] and report.problems == []
    assert sorted(message.rcpt_tos[0] for message in smtp_server.messages) == approvers
    mail = parsed(smtp_server.messages[0].data)
    assert mail["Subject"] == f"[AOL] Action #{action.pk} (POST_SOCIAL) waits for your approval"
    body = mail.get_content()
    assert f"{MESSAGE} (0)" in body and "Post to threads as acme" in body
    assert link(action.pk) in body
    action.refresh_from_db()
    assert action.approval_notified_at is not None
    log = ExecutionLog.objects.filter(action_id=action.pk).latest("id")
    assert log.message == "approvers notified: email to 3 approver(s)"


def test_notify__at_most_once_per_action_across_passes_and_daemons(approvers, smtp_settings, smtp_server):
    park()
    approval_notify_pending(actor="test:1")
    sent = len(smtp_server.messages)
    assert approval_notify_pending(actor="test:2").announced == []  # a restarted daemon's first pass
    assert len(smtp_server.messages) == sent == 3


def test_notify__more_than_the_threshold_at_once__one_digest_listing_them(
    approvers, smtp_settings, smtp_server, settings
):
    settings.AOL_APPROVAL_DIGEST_THRESHOLD = 2
    settings.AOL_MAX_ACTIONS_PER_TICK = 5
    actions = park(3)
    report = approval_notify_pending(actor="test:1")
    assert sorted(report.announced) == sorted(action.pk for action in actions)
    assert len(smtp_server.messages) == 3  # one digest per approver
    mail = parsed(smtp_server.messages[0].data)
    assert mail["Subject"] == "[AOL] 3 actions wait for your approval"
    body = mail.get_content()
    for n, action in enumerate(actions):
        assert link(action.pk) in body and f"{MESSAGE} ({n})" in body
    assert (
        "approvers notified (in a digest of 3)"
        in ExecutionLog.objects.filter(action_id=actions[0].pk).latest("id").message
    )


def test_notify__mail_server_refuses__recorded_on_the_action_not_raised_not_resent(
    approvers, smtp_settings, smtp_server
):
    (action,) = park()
    smtp_server.mode = "451"
    report = approval_notify_pending(actor="test:1")
    assert report.emails == 0 and report.problems and "email failed" in report.problems[0]
    log = ExecutionLog.objects.filter(action_id=action.pk).latest("id")
    assert log.level == "WARNING" and "not delivered: email failed" in log.message
    smtp_server.mode = "accept"
    assert approval_notify_pending(actor="test:1").announced == []
    assert Action.objects.get(pk=action.pk).status == ActionStatus.AWAITING_APPROVAL


def test_notify__signed_webhook_with_the_actions_and_links(approvers, smtp_settings, webhook_server, settings):
    settings.AOL_APPROVAL_WEBHOOK_URL = webhook_server.url
    settings.APPROVAL_WEBHOOK_SECRET = SECRET
    (action,) = park()
    report = approval_notify_pending(actor="test:1")
    assert report.webhook and report.problems == []
    (received,) = webhook_server.requests
    assert signature_valid(secret=SECRET, header=received.headers["aol-signature"], body=received.body)
    assert received.headers["idempotency-key"].startswith("aol-approval-")
    event = json.loads(received.body)
    assert event["event"] == "approval.waiting" and event["approvals_url"] == "https://aol.example.com" + reverse(
        "orchestration:approvals"
    )
    assert event["actions"] == [
        {
            "id": action.pk,
            "action_type": "POST_SOCIAL",
            "summary": f"Post to threads as acme:\n{MESSAGE} (0)",
            "url": link(action.pk),
        }
    ]
    assert MESSAGE in event["text"] and SECRET not in received.body.decode()
    log = ExecutionLog.objects.filter(action_id=action.pk).latest("id").message
    assert log == f"approvers notified: email to 3 approver(s), webhook http://127.0.0.1:{webhook_server.port}"


def test_notify__webhook_without_its_secret_or_failing__says_why_never_raises(approvers, webhook_server, settings):
    settings.AOL_APPROVAL_WEBHOOK_URL = webhook_server.url
    settings.APPROVAL_WEBHOOK_SECRET = ""
    (first,) = park()
    report = approval_notify_pending(actor="test:1")
    assert not report.webhook and "AOL_APPROVAL_WEBHOOK_SECRET is not set" in report.problems[-1]
    assert webhook_server.requests == []

    settings.APPROVAL_WEBHOOK_SECRET = "not-the-receivers-secret"  # the receiver answers 401
    Action.objects.filter(pk=first.pk).update(approval_notified_at=None)
    report = approval_notify_pending(actor="test:1")
    assert "failed (HTTP 401)" in report.problems[-1]
    assert "not-the-receivers-secret" not in ExecutionLog.objects.filter(action_id=first.pk).latest("id").message


@pytest.mark.django_db(transaction=True)
def test_daemon__announces_a_parked_action_once_by_email(approvers, smtp_server, start_daemon):
    action = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "threads", "account": "acme", "message": MESSAGE},
        idempotency_key="launch-daemon",
    )[0]
    env = {
        **smtp_server.env(),
        "AOL_EXTRA_ADAPTERS": ",".join(FLOW_ADAPTERS),
        "AOL_CONSOLE_URL": "https://aol.example.com",
    }
    daemon = start_daemon(env=env)
    wait_until(lambda: len(smtp_server.messages) >= 3, timeout=30, message="three approval emails")
    daemon.stop()  # SIGKILL: the lease stays held until its TTL
    assert Action.objects.get(pk=action.pk).status == ActionStatus.AWAITING_APPROVAL
    again = start_daemon("--standby", env=env)  # a restart does not announce it again
    again.wait_for_output("[AOL Tick 3]", timeout=30)  # every tick looks for unannounced actions
    again.stop()
    assert len(smtp_server.messages) == 3
    assert link(action.pk) in parsed(smtp_server.messages[0].data).get_content()


def test_notify__mail_not_configured__says_so_on_the_action(approvers, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = ""
    (action,) = park()
    report = approval_notify_pending(actor="test:1")
    assert report.emails == 0 and "email not sent: EMAIL_HOST is not set" in report.problems[0]
    log = ExecutionLog.objects.filter(action_id=action.pk).latest("id")
    assert log.level == "WARNING" and "approvers notified: nobody; not delivered: email not sent" in log.message
