"""The console's Overview in real headless Chromium, with a real run_aol_daemon process behind it."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from orchestration.models import Action, ActionStatus, AuditEntry, ExecutionLog, TickLedger
from orchestration.services.control import control_flags_get
from orchestration.services.enqueue import action_enqueue
from tests.browser.conftest import BROWSER_DAEMON_ENV
from tests.conftest import wait_until

# The browser drives the console, whose database work the rest of the suite covers on both databases:
# it runs once, on PostgreSQL (production); test_make_run_browser.py drives `make run` on SQLite.
pytestmark = [pytest.mark.browser, pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-test-password-7"
PAYLOAD = '{"platform": "twitter", "message": "Hello from a real browser"}'


def make_user(username: str, *, superuser: bool = False, permissions: tuple[str, ...] = ()):
    User = get_user_model()
    if superuser:
        return User.objects.create_superuser(username, "", PASSWORD)
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="orchestration", codename__in=permissions)
    )
    return user


def log_in(page, console_server, username: str):
    """Open the status view: the console sends us to the login form, then back."""
    page.goto(f"{console_server.url}/console/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#aol-console")
    assert page.url.endswith("/console/")


def press(page, control: str, reason: str, **fields):
    form = f"#control-{control}"
    page.fill(f"{form} input[name={control}-reason]", reason)
    for name, value in fields.items():
        if value is True:
            page.check(f"{form} input[name={control}-{name}]")
        else:
            page.fill(f"{form} input[name={control}-{name}]", value)
    page.click(f"{form} button[type=submit]")


def start_console_daemon(start_daemon):
    daemon = start_daemon("--proof", env=BROWSER_DAEMON_ENV)
    daemon.wait_for_output("[AOL Tick 0]")
    return daemon


def test_status_view__shows_the_running_daemon_green_in_proof_mode(page, console_server, start_daemon, screenshot):
    make_user("root", superuser=True)
    daemon = start_console_daemon(start_daemon)
    log_in(page, console_server, "root")
    page.wait_for_selector("#lease-light.light-green")
    assert page.inner_text("#card-lease [data-field='lease.holder']") == daemon.owner()
    assert page.inner_text("#lease-state-label") == "running"
    assert page.inner_text("#banner-mode").startswith("PROOF MODE")
    # The charts are drawn from the ledger: one bar per tick so far.
    page.wait_for_selector("#chart-ticks rect.bar")
    page.wait_for_selector("#chart-depth polyline.series-PENDING", state="attached")  # flat at 0: no height
    screenshot("status-daemon-green")


def test_status_view__pause_stops_claiming_and_resume_runs_it(page, console_server, start_daemon, screenshot):
    make_user("root", superuser=True)
    start_console_daemon(start_daemon)
    log_in(page, console_server, "root")
    page.wait_for_selector("#lease-light.light-green")

    press(page, "pause", "browser test: pause")
    page.wait_for_selector("#banner-paused:not([hidden])")
    assert "Pause: done" in page.inner_text("ul.messagelist")
    paused_at = timezone.now()
    wait_until(lambda: TickLedger.objects.filter(status="PAUSED", started_at__gte=paused_at).exists(), timeout=10)

    action, _ = action_enqueue(
        action_type="POST_SOCIAL", payload={"platform": "twitter", "message": "held"}, idempotency_key="held-1"
    )
    # Several ticks pass while paused; none claims the action.
    queued_at = timezone.now()
    wait_until(lambda: TickLedger.objects.filter(status="PAUSED", started_at__gt=queued_at).count() >= 3, timeout=15)
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)
    assert not TickLedger.objects.filter(started_at__gt=paused_at, actions_attempted__gt=0).exists()
    page.wait_for_selector("#card-tick [data-field='last_tick.status']:text('PAUSED')")
    screenshot("status-paused")

    press(page, "resume", "browser test: resume")
    page.wait_for_selector("#banner-paused[hidden]", state="attached")
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, timeout=15)
    page.wait_for_selector(f"#logs-table tbody tr:has(a:text-is('#{action.pk}')):has-text('PROOF: would post')")
    verbs = list(AuditEntry.objects.filter(actor="root").order_by("id").values_list("verb", flat=True))
    assert verbs == ["pause", "resume"]


def test_status_view__enqueued_action_log_row_appears_without_reload(page, console_server, start_daemon, screenshot):
    make_user("root", superuser=True)
    start_console_daemon(start_daemon)
    log_in(page, console_server, "root")

    page.click("#nav-actions")
    page.select_option("#id_enqueue-action_type", "POST_SOCIAL")
    page.fill("#id_enqueue-payload", PAYLOAD)
    page.fill("#id_enqueue-idempotency_key", "browser-enqueue-1")
    page.fill("#id_enqueue-reason", "browser test: enqueue")
    page.click("#enqueue-form button[type=submit]")
    message = page.inner_text("ul.messagelist")
    action = Action.objects.get(idempotency_key="browser-enqueue-1")
    assert re.search(rf"Enqueued action #{action.pk}\b", message)
    assert page.get_attribute(f"ul.messagelist a:text-is('action #{action.pk}')", "href").endswith(
        f"/console/actions/{action.pk}/"
    )
    assert page.url.endswith("/console/actions/")  # back where the form was

    # The Overview shows the run: from here on the page must update by itself.
    page.click("#nav-status")
    page.wait_for_selector("#aol-console")
    # From here on the page must update by itself: mark this document and check it survives.
    page.evaluate("window.__sameDocument = 'yes'")
    row = f"#logs-table tbody tr:has(a:text-is('#{action.pk}')):has-text('PROOF: would post')"
    page.wait_for_selector(row)
    assert page.evaluate("window.__sameDocument") == "yes"
    # The page refreshed itself at least once (the row may already have been in the first render).
    # (A selector, not wait_for_function: Playwright evaluates a predicate string in the page, which the
    # Content-Security-Policy forbids, as it forbids every eval.)
    page.wait_for_selector("#aol-console[data-refreshes]", state="attached")
    sha = ExecutionLog.objects.get(action_id=action.pk, artifact_sha256__gt="").artifact_sha256
    assert page.get_attribute(f"{row} td:last-child", "title") == sha
    assert page.inner_text("#card-queue [data-field='counts.SUCCESS']") == "1"
    screenshot("status-enqueued-action-succeeded")


def test_status_view__kill_stops_the_daemon_and_revive_clears_it(page, console_server, start_daemon, screenshot):
    make_user("root", superuser=True)
    daemon = start_console_daemon(start_daemon)
    log_in(page, console_server, "root")
    page.wait_for_selector("#lease-light.light-green")

    press(page, "kill", "browser test: kill")  # without the confirmation box: the browser will not send it
    assert page.eval_on_selector("#control-kill input[name=kill-confirm]", "box => box.validity.valueMissing")
    assert control_flags_get().killed is False
    press(page, "kill", "browser test: kill", confirm=True)
    assert daemon.wait(timeout=20) == 0
    page.wait_for_selector("#banner-killed:not([hidden])")
    page.wait_for_selector("#lease-light.light-red")
    screenshot("status-killed")

    press(page, "revive", "browser test: revive")
    page.wait_for_selector("#banner-killed[hidden]", state="attached")
    assert control_flags_get().killed is False


def test_status_view__switch_to_real_without_permission_is_refused(page, console_server, screenshot):
    make_user("oper", permissions=("pause_daemon", "kill_daemon", "manage_dlq", "enqueue_action"))
    log_in(page, console_server, "oper")
    assert "You lack orchestration.switch_mode" in page.inner_text("#control-real")
    press(page, "real", "browser test: go live", confirmation="REAL")
    assert "You do not have the permission to switch to REAL" in page.inner_text("#denied-message")
    screenshot("real-switch-refused")
    assert control_flags_get().proof_mode is True
    denied = AuditEntry.objects.get(outcome="DENIED")
    assert (denied.actor, denied.verb, denied.reason) == ("oper", "switch to REAL", "browser test: go live")


def test_status_view__needs_review_action_appears_without_reload_and_is_retried(page, console_server, screenshot):
    make_user("root", superuser=True)
    log_in(page, console_server, "root")
    page.evaluate("window.__sameDocument = 'yes'")
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": "m"})
    Action.objects.filter(pk=action.pk).update(status=ActionStatus.NEEDS_REVIEW, last_error="outcome unknown")
    # The Overview's "Recent problems" shows it by its own refresh.
    page.wait_for_selector(f"#problems-table tbody tr[data-action-id='{action.pk}'] .badge-NEEDS_REVIEW")
    assert page.evaluate("window.__sameDocument") == "yes"
    assert page.inner_text("#problems-card [data-field='counts.NEEDS_REVIEW']") == "1"
    screenshot("status-needs-review")
    # Retried from Attention, where it is listed with a checkbox.
    page.click("#problems-card a:text-is('Attention')")
    row = f"#dlq-table tbody tr[data-action-id='{action.pk}']"
    page.wait_for_selector(f"{row} .badge-NEEDS_REVIEW")
    page.check(f"{row} input[type=checkbox]")
    page.fill("#dlq-form input[name=dlq-reason]", "checked: it was never posted")
    page.click("#dlq-form button[name=submit-retry]")
    assert "Retry: 1 action retried." in page.inner_text("ul.messagelist")
    assert page.url.endswith("/console/attention/")
    assert Action.objects.get(pk=action.pk).status == ActionStatus.PENDING
