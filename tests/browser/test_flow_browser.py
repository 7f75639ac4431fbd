"""Flow control in real headless Chromium: approving a REAL post, pausing one type."""

import pytest

from orchestration.models import Action, ActionStatus, ActionTypePause
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.browser.conftest import BROWSER_DAEMON_ENV
from tests.browser.test_console_browser import log_in, make_user
from tests.conftest import wait_until
from tests.fake_adapters import FLOW_ADAPTERS, sent_lines

# The browser drives the console, whose database work the rest of the suite covers on both databases:
# it runs once, on PostgreSQL (production); test_make_run_browser.py drives `make run` on SQLite.
pytestmark = [pytest.mark.browser, pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def test_approvals__a_real_post_appears_for_review_and_goes_out_once_approved(
    page, start_console_server, start_daemon, screenshot, settings, artifacts_dir
):
    settings.AOL_EXTRA_ADAPTERS = FLOW_ADAPTERS
    make_user("editor", permissions=("approve_action", "view_action"))
    control_set_proof_mode(enabled=False, actor="setup", reason="REAL with approvals")
    start_daemon(env={**BROWSER_DAEMON_ENV, "AOL_EXTRA_ADAPTERS": ",".join(FLOW_ADAPTERS)})
    console_server = start_console_server(AOL_EXTRA_ADAPTERS=",".join(FLOW_ADAPTERS))
    log_in(page, console_server, "editor")
    action = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "facebook", "account": "acme", "message": "Our <new> office opens Monday"},
        idempotency_key="office-1",
    )[0]
    # The Overview counts it by its own refresh, without a reload, and links to Approvals.
    page.wait_for_selector("#approvals-waiting [data-field='counts.AWAITING_APPROVAL']:text-is('1')")
    screenshot("flow-status-awaiting-approval")
    page.click("#approvals-waiting")
    page.click(f"#approvals-table tr[data-action-id='{action.pk}'] a.button")
    page.wait_for_selector("#artifact-content")
    assert "Our <new> office opens Monday" in page.inner_text("#artifact-content")
    action.refresh_from_db()
    assert page.inner_text("#artifact-sha256") == action.approval_sha256
    assert page.is_visible("#artifact-verified")
    screenshot("flow-approval-page")
    assert sent_lines(artifacts_dir) == []

    page.fill("#approve-form input[name=approve-reason]", "copy checked")
    page.click("#approve-form button[type=submit]")
    page.wait_for_selector(".messagelist .success")
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, message="sent")
    assert sent_lines(artifacts_dir) == [["office-1", action.approval_sha256, "Our <new> office opens Monday"]]


def test_pause_type__the_banner_and_the_table_say_who_paused_it(page, console_server, start_daemon, screenshot):
    make_user("root", superuser=True)
    start_daemon("--proof", env=BROWSER_DAEMON_ENV)
    log_in(page, console_server, "root")
    page.click("#nav-schedules")
    page.select_option("#type-pause-form select", "POST_SOCIAL")
    page.fill("#type-pause-form input[name=types-reason]", "legal review")
    page.click("#type-pause-form button[name=submit-type-pause]")
    page.wait_for_selector("#types-table tr[data-type='POST_SOCIAL'].type-paused")
    assert ActionTypePause.objects.get().paused_by == "root"
    row = page.inner_text("#types-table tr[data-type='POST_SOCIAL']")
    assert "PAUSED" in row and "root" in row and "legal review" in row
    page.click("#nav-status")
    page.wait_for_selector("#banner-types-paused:not([hidden])")
    post = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "held"})[0]
    drill = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    wait_until(lambda: Action.objects.get(pk=drill.pk).status == ActionStatus.SUCCESS, message="other type ran")
    assert Action.objects.get(pk=post.pk).status == ActionStatus.PENDING
    screenshot("flow-type-paused")
