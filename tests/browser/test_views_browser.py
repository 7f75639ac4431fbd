"""The console's views in real headless Chromium: every console and admin page fits 1280 and 1920 px
with realistic data, without console errors; a control works from each view; errors are announced."""

import os

import pytest
from django.db import connection
from django.urls import reverse

from orchestration.models import Action, ActionStatus, AuditEntry
from orchestration.services.enqueue import action_enqueue
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_console_browser import PASSWORD, make_user
from tests.realistic_data import realistic_console_data

# The browser drives the console, whose database work the rest of the suite covers on both databases:
# it runs once, on PostgreSQL (production); test_make_run_browser.py drives `make run` on SQLite.
pytestmark = [pytest.mark.browser, pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

WIDTHS = (1280, 1920)


def console_pages(ids: dict[str, int]) -> dict[str, str]:
    return {
        "overview": reverse("orchestration:status"),
        "actions": reverse("orchestration:actions"),
        "actions-dlq": reverse("orchestration:actions") + "?status=DLQ",
        "action-dlq": reverse("orchestration:action", args=[ids["dlq"]]),
        "action-awaiting": reverse("orchestration:action", args=[ids["awaiting"]]),
        "approvals": reverse("orchestration:approvals"),
        "approval": reverse("orchestration:approval", args=[ids["awaiting"]]),
        "attention": reverse("orchestration:attention"),
        "calendar": reverse("orchestration:calendar"),
        "schedules": reverse("orchestration:schedules"),
        "audit": reverse("orchestration:audit"),
        "diagnostics": reverse("orchestration:diagnostics"),
    }


def admin_pages(ids: dict[str, int]) -> dict[str, str]:
    return {
        "admin-index": reverse("admin:index"),
        "admin-actions": reverse("admin:orchestration_action_changelist"),
        "admin-actions-dlq": reverse("admin:orchestration_action_changelist") + "?status__exact=DLQ",
        "admin-action": reverse("admin:orchestration_action_change", args=[ids["dlq"]]),
        "admin-ticks": reverse("admin:orchestration_tickledger_changelist"),
        "admin-logs": reverse("admin:orchestration_executionlog_changelist"),
        "admin-audit": reverse("admin:orchestration_auditentry_changelist"),
    }


def sign_in(page, console_server, username: str = "root") -> None:
    page.goto(f"{console_server.url}{reverse('admin:login')}?next={reverse('orchestration:status')}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#aol-nav")


#: Asked for by the browser itself, not by our pages; the favicon is another change's (issue 15, hardening).
BROWSER_OWN_REQUESTS = ("/favicon.ico",)


def collect_errors(page) -> list[str]:
    """Console errors, uncaught exceptions and failed responses (with their URL) of everything the page loads."""
    errors: list[str] = []

    def on_console(message) -> None:
        # A failed load is reported by its response below, with its URL.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    def on_response(response) -> None:
        if response.status >= 400 and not response.url.endswith(BROWSER_OWN_REQUESTS):
            errors.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", on_response)
    return errors


def overflow(page) -> dict:
    return page.evaluate(
        """() => ({scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
                  wide: [...document.querySelectorAll('body *')]
                    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                    .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)})"""
    )


# Layout is the templates' and the stylesheets', whatever the database: measured once, on SQLite.
@pytest.mark.sqlite_only
@pytest.mark.parametrize("width", WIDTHS)
def test_every_page__fits_the_screen_without_console_errors(browser, console_server, shoot, width):
    make_user("root", superuser=True)
    ids = realistic_console_data()
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors = collect_errors(page)
    try:
        sign_in(page, console_server)
        for name, url in {**console_pages(ids), **admin_pages(ids)}.items():
            page.goto(f"{console_server.url}{url}")
            page.wait_for_load_state("load")
            if name == "overview":
                page.wait_for_selector("#chart-ticks rect.bar", state="attached")
            measured = overflow(page)
            shoot(page, f"fit-{width}-{name}")
            assert measured["scrollWidth"] <= measured["innerWidth"], f"{name} at {width} px: {measured}"
        assert errors == []
    finally:
        context.close()


def test_admin_actions__dlq_triage_columns_are_visible_at_1280(browser, console_server, shoot):
    make_user("root", superuser=True)
    realistic_console_data()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, console_server)
        for url in (
            reverse("admin:orchestration_action_changelist") + "?status__exact=DLQ",
            reverse("admin:orchestration_tickledger_changelist"),
        ):
            page.goto(f"{console_server.url}{url}")
            # No column is hidden behind the results' own horizontal scroll, nor past the window's edge.
            results = page.evaluate(
                """() => { const r = document.querySelector('#changelist .results');
                           return {scroll: r.scrollWidth, client: r.clientWidth,
                                   right: Math.max(...[...r.querySelectorAll('thead th')]
                                                    .map(th => th.getBoundingClientRect().right)),
                                   widths: [...r.querySelectorAll('thead th')]
                                     .map(th => th.className + ':' + Math.round(th.offsetWidth))}; }"""
            )
            assert results["scroll"] <= results["client"] and results["right"] <= 1280, (url, results)
        page.goto(f"{console_server.url}{reverse('admin:orchestration_action_changelist')}?status__exact=DLQ")
        for column in ("column-updated_at", "column-last_error_short"):
            box = page.locator(f"#result_list thead th.{column}").bounding_box()
            assert box and box["x"] + box["width"] <= 1280, column
        shoot(page, "fit-1280-admin-dlq-triage")
    finally:
        context.close()


def test_actions__cancel_from_the_action_page(page, console_server, screenshot):
    make_user("root", superuser=True)
    errors = collect_errors(page)
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "x", "message": "wrong price"},
        idempotency_key="price-typo",
        not_before=None,
    )
    sign_in(page, console_server)
    page.click("#nav-actions")
    page.fill("#id_key", "price-typo")
    page.click("#filter-form button[type=submit]")
    page.click(f"#actions-table tr[data-action-id='{action.pk}'] a")
    page.wait_for_selector("#action-summary")
    assert page.inner_text("#action-status") == "PENDING"
    page.fill("#verb-cancel input[name=queue-reason]", "the price in it is wrong")
    page.click("#verb-cancel button[type=submit]")
    page.wait_for_selector("#action-status.badge-CANCELLED")
    assert "Cancel: 1 action cancelled." in page.inner_text("ul.messagelist")
    assert page.url.endswith(f"/console/actions/{action.pk}/")
    assert Action.objects.get(pk=action.pk).status == ActionStatus.CANCELLED
    assert AuditEntry.objects.get(verb="cancel").reason == "the price in it is wrong"
    screenshot("views-action-cancelled")
    assert errors == []


def test_actions__an_enqueue_error_is_announced_at_the_top_and_shown_beside_the_field(page, console_server, screenshot):
    make_user("root", superuser=True)
    sign_in(page, console_server)
    page.click("#nav-actions")
    page.fill("#id_enqueue-payload", "{not json")
    page.fill("#id_enqueue-reason", "browser test")
    page.click("#enqueue-form button[type=submit]")
    summary = page.locator("#form-errors")
    summary.wait_for()
    # The announcement is where the browser lands (the top of the page), not thousands of pixels below.
    assert page.evaluate("window.scrollY") == 0
    box = summary.bounding_box()
    assert box and box["y"] + box["height"] <= 900
    assert summary.get_attribute("role") == "alert"
    assert "Enqueue an action" in summary.inner_text()
    assert "JSON" in page.inner_text("#enqueue-form .field-payload .errorlist")
    page.click("#form-errors a[href='#enqueue-form']")
    assert page.evaluate("window.scrollY") > 0
    screenshot("views-enqueue-error")
    assert not Action.objects.exists()


def test_audit_and_calendar__filter_and_move_between_weeks(page, console_server, screenshot):
    make_user("root", superuser=True)
    realistic_console_data()
    sign_in(page, console_server)
    page.click("#nav-audit")
    page.select_option("#id_outcome", "DENIED")
    page.click("#filter-form button[type=submit]")
    outcomes = page.locator("#audit-table tbody .badge").all_inner_texts()
    assert outcomes and set(outcomes) == {"DENIED"}
    page.click("#nav-calendar")
    first = page.inner_text("#calendar-title")
    page.click("#calendar-next")
    page.wait_for_function(f"document.querySelector('#calendar-title').innerText !== {first!r}")
    assert page.locator("#calendar-week .calendar-day").count() == 7
    screenshot("views-calendar-next-week")


@pytest.fixture
def shoot(screenshot):
    """``shoot(page, name)``: a full-page screenshot of another page than the ``page`` fixture's, per database."""
    label = os.environ.get("AICMO_TEST_DB_LABEL") or connection.vendor

    def take(other_page, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        other_page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)

    return take
