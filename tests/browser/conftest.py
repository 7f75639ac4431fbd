"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, against gunicorn.

The console is served by gunicorn with deploy/gunicorn.conf.py (tests/web_server.py) on the test
database, as in production, not by Django's in-process live server: its settings come from the
environment given to it here, not from the test's ``settings`` fixture.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import ROOT, test_database_url

CHROMIUM = os.environ.get("AICMO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-output" / "screenshots"

#: Daemon timings for browser tests: quick ticks, but a lease TTL comfortably above the heartbeat,
#: so that a busy machine does not turn the lease amber while the page is being checked.
BROWSER_DAEMON_ENV = {
    "AOL_TICK_INTERVAL_SECONDS": "0.3",
    "AOL_HEARTBEAT_SECONDS": "1",
    "AOL_LEASE_TTL_SECONDS": "6",
    "AOL_CONTROL_POLL_SECONDS": "0.1",
}


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module. Playwright's sync API runs an event loop in this thread, so
    Django's ORM calls made by the test itself must be allowed to run beside it."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        # Like the PostgreSQL half: a laptop without Chromium skips these, CI must run them.
        message = f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


#: The console server's settings: the lease judged with the daemon's timings, a quick refresh.
BROWSER_WEB_ENV = {
    "AOL_LEASE_TTL_SECONDS": BROWSER_DAEMON_ENV["AOL_LEASE_TTL_SECONDS"],
    "AOL_HEARTBEAT_SECONDS": BROWSER_DAEMON_ENV["AOL_HEARTBEAT_SECONDS"],
    "AOL_CONSOLE_REFRESH_SECONDS": "0.5",
}


@pytest.fixture
def start_console_server(start_web_server, transactional_db):
    """``start_console_server(**env)`` → gunicorn serving the console on the test database."""

    def start(**extra: str):
        return start_web_server(test_database_url(), **{**BROWSER_WEB_ENV, **extra})

    return start


@pytest.fixture
def console_server(start_console_server):
    """gunicorn serving the console on the test database (``.url``), stopped at teardown."""
    return start_console_server()


@pytest.fixture
def screenshot(page):
    """``screenshot("name")`` saves the page under test-output/screenshots/, per database."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    label = os.environ.get("AICMO_TEST_DB_LABEL") or connection.vendor

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
