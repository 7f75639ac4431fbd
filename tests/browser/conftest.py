"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, against live_server."""

import os
import shutil
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import ROOT

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


@pytest.fixture(autouse=True)
def console_settings(settings):
    """The live server judges the lease with the daemon's timings and refreshes quickly."""
    settings.AOL_LEASE_TTL_SECONDS = float(BROWSER_DAEMON_ENV["AOL_LEASE_TTL_SECONDS"])
    settings.AOL_HEARTBEAT_SECONDS = float(BROWSER_DAEMON_ENV["AOL_HEARTBEAT_SECONDS"])
    settings.AOL_CONSOLE_REFRESH_SECONDS = 0.5
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
