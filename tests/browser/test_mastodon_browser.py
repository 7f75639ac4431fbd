"""Mastodon REAL end to end in real headless Chromium: a daemon in REAL mode makes the PROOF, a person approves it in
the console's Approvals page, the local Mastodon instance gets the post once, and the action's page links to it."""

import pytest
from cryptography.fernet import Fernet

from orchestration.models import Action, ActionStatus
from orchestration.services.accounts import account_add
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.browser.conftest import BROWSER_DAEMON_ENV
from tests.browser.test_console_browser import log_in, make_user
from tests.conftest import wait_until
from tests.platform_servers.mastodon import TOKEN

# The browser drives the console, whose database work the rest of the suite covers on both databases:
# it runs once, on PostgreSQL (production); test_make_run_browser.py drives `make run` on SQLite.
pytestmark = [pytest.mark.browser, pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

MESSAGE = "Doors open at 9 on Monday: https://shop.example/opening <see you there>"


def test_mastodon__approve_in_the_console_then_one_post_and_its_link_on_the_action_page(
    page, start_console_server, start_daemon, mastodon_server, screenshot, settings
):
    key = Fernet.generate_key().decode()
    settings.AOL_CREDENTIALS_KEYS = [key]
    account_add(
        name="brand-main", platform="mastodon", base_url=mastodon_server.url, credentials={"access_token": TOKEN},
        actor="setup",
    )  # fmt: skip
    make_user("editor", permissions=("approve_action", "view_action"))
    control_set_proof_mode(enabled=False, actor="setup", reason="REAL with approvals")
    daemon = start_daemon(env={**BROWSER_DAEMON_ENV, "AOL_CREDENTIALS_KEYS": key})
    console_server = start_console_server(AOL_CREDENTIALS_KEYS=key)
    log_in(page, console_server, "editor")
    action = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "mastodon", "account": "brand-main", "message": MESSAGE},
        idempotency_key="opening-1",
    )[0]

    page.wait_for_selector("#approvals-waiting [data-field='counts.AWAITING_APPROVAL']:text-is('1')")
    page.click("#approvals-waiting")
    page.click(f"#approvals-table tr[data-action-id='{action.pk}'] a.button")
    page.wait_for_selector("#artifact-content")
    shown = page.inner_text("#artifact-content")
    assert f"POST {mastodon_server.url}/api/v1/statuses" in shown and "Idempotency-Key: aol-" in shown
    assert "Authorization: <the account's credentials, added at sending>" in shown and TOKEN not in shown
    action.refresh_from_db()
    assert page.inner_text("#artifact-sha256") == action.approval_sha256
    screenshot("mastodon-approval-page")
    assert mastodon_server.requests == []  # nothing goes out before the click

    page.fill("#approve-form input[name=approve-reason]", "copy checked")
    page.click("#approve-form button[type=submit]")
    page.wait_for_selector(".messagelist .success")
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, timeout=30, message="posted")
    [post] = mastodon_server.posts
    assert post.text == MESSAGE and len(mastodon_server.post_requests()) == 1

    page.goto(f"{console_server.url}/console/actions/{action.pk}/")
    link = page.locator("#action-remote-url a")
    assert link.get_attribute("href") == mastodon_server.status_url(post.id)
    assert page.inner_text("#action-remote-id") == post.id
    screenshot("mastodon-action-posted")
    assert TOKEN not in page.content() and TOKEN not in daemon.output()
