"""In real headless Chromium: an approver follows the notification email's link, edits the post, approves it, and
the REAL run (a real daemon process) sends the edited text, once."""

import email
import email.policy
import re

import pytest
from django.contrib.auth import get_user_model

from orchestration.models import Action, ActionStatus, AuditEntry
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.browser.conftest import BROWSER_DAEMON_ENV
from tests.browser.test_console_browser import log_in, make_user
from tests.conftest import wait_until
from tests.fake_adapters import FLOW_ADAPTERS, sent_lines

# The browser drives the console, whose database work the rest of the suite covers on both databases:
# it runs once, on PostgreSQL (production); test_make_run_browser.py drives `make run` on SQLite.
pytestmark = [pytest.mark.browser, pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ORIGINAL = "Our new office opens Monday"
EDITED = "Our new office opens Tuesday at 10: come and say hello"


def test_approval__notified_approver_edits_the_text_approves_and_the_real_run_sends_the_edit(
    page, start_console_server, start_daemon, screenshot, settings, artifacts_dir, smtp_server
):
    settings.AOL_EXTRA_ADAPTERS = FLOW_ADAPTERS
    editor = make_user("editor", permissions=("approve_action", "view_action"))
    get_user_model().objects.filter(pk=editor.pk).update(email="editor@example.com")
    control_set_proof_mode(enabled=False, actor="setup", reason="REAL with approvals")
    console_server = start_console_server(AOL_EXTRA_ADAPTERS=",".join(FLOW_ADAPTERS))
    start_daemon(
        env={
            **BROWSER_DAEMON_ENV,
            **smtp_server.env(),
            "AOL_EXTRA_ADAPTERS": ",".join(FLOW_ADAPTERS),
            "AOL_CONSOLE_URL": console_server.url,
        }
    )
    action = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "threads", "account": "acme", "message": ORIGINAL},
        idempotency_key="office-2",
    )[0]

    # The approver hears about it by email, with a link to the approval page.
    (received,) = wait_until(lambda: list(smtp_server.messages), timeout=30, message="the approval email")
    assert received.rcpt_tos == ["editor@example.com"]
    body = email.message_from_bytes(received.data, policy=email.policy.default).get_content()
    assert ORIGINAL in body
    link = re.search(r"https?://\S+/approvals/\d+/", body).group(0)

    log_in(page, console_server, "editor")
    page.goto(link)
    page.wait_for_selector("#post-text")
    assert page.inner_text("#post-text") == ORIGINAL
    assert page.inner_text("#post-count") == f"{len(ORIGINAL)} / 500 characters"
    first_sha = Action.objects.get(pk=action.pk).approval_sha256
    assert page.inner_text("#artifact-sha256") == first_sha

    page.fill("#edit-form textarea[name=edit-message]", EDITED)
    page.fill("#edit-form input[name=edit-reason]", "the date moved")
    page.click("#edit-form button[name=submit-edit]")
    page.wait_for_selector(".messagelist .success")
    assert page.inner_text("#post-text") == EDITED
    assert page.inner_text("#post-count") == f"{len(EDITED)} / 500 characters"
    action.refresh_from_db()
    assert action.approval_sha256 != first_sha and page.inner_text("#artifact-sha256") == action.approval_sha256
    assert EDITED in page.inner_text("#artifact-content") and page.is_visible("#artifact-verified")
    screenshot("approval-edited")

    page.fill("#approve-form input[name=approve-reason]", "copy checked")
    page.click("#approve-form button[type=submit]")
    page.wait_for_selector(".messagelist .success")
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, message="sent", timeout=30)
    assert sent_lines(artifacts_dir) == [["office-2", action.approval_sha256, EDITED]]
    edit = AuditEntry.objects.get(verb="edit before approval")
    assert (edit.actor, edit.before["message"], edit.after["message"]) == ("editor", ORIGINAL, EDITED)
    assert len(smtp_server.messages) == 1  # announced once, not again after the edit
