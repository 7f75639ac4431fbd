"""The console under `make run`'s own process arrangement: honcho running the Procfile (runserver and the
daemon), on a fresh SQLite database and a free port, driven by real Chromium.

Honcho ends every process when one exits, so these are the tests that a kill no longer takes the
console down, that Revive brings work back without a shell, and that the REAL flag takes effect.
The database is a temporary file of its own (as `make run` uses var/local.db), not the test database,
so the test reads everything through the page, as an operator would.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.conftest import BROWSER_DAEMON_ENV
from tests.conftest import ROOT, wait_until
from tests.web_server import free_port

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]

PASSWORD = "make-run-browser-password-3"

#: Catches what the Content-Security-Policy refused, whatever page of the site is open.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push([e.violatedDirective, e.blockedURI || "inline", e.sourceFile, e.lineNumber].join(" "));
});
"""


class MakeRun:
    """`make run`'s last step (honcho start -f Procfile) with the project's virtualenv first on PATH."""

    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.log_path = tmp_path / "honcho.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AOL_", "DATABASE_URL"))}
        env.update(BROWSER_DAEMON_ENV)
        env.update(
            {
                "DATABASE_URL": f"sqlite:///{tmp_path / 'local.db'}",
                "AOL_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
                "AOL_CONSOLE_REFRESH_SECONDS": "0.5",
                "AICMO_PORT": str(self.port),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
                "DJANGO_SETTINGS_MODULE": "aicmo_site.settings",
                "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
            }
        )
        manage = [sys.executable, "manage.py"]
        for step in (["migrate", "--noinput"], ["createsuperuser", "--noinput", "--username", "root", "--email", ""]):
            subprocess.run([*manage, *step], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop())
        # Its own process group, as a terminal gives `make run`: Ctrl+C reaches honcho and its children.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "honcho", "start", "-f", "Procfile"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: "[AOL Tick 0]" in self.output() or self.proc.poll() is not None, timeout=60)
        wait_until(lambda: "Quit the server with" in self.output() or self.proc.poll() is not None, timeout=60)
        assert self.running(), self.output()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text()

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.running():
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl+C
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def make_run(tmp_path):
    started = MakeRun(tmp_path)
    yield started
    started.stop()


@pytest.fixture
def watched_page(page):
    """The page, recording console errors and CSP violations; the test asserts there were none."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.add_init_script(CSP_LISTENER)
    page.errors = errors
    return page


def assert_clean(page) -> None:
    assert page.errors == [], page.errors
    assert page.evaluate("window.__cspViolations") == []


def log_in(page, url: str) -> None:
    page.goto(f"{url}/console/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#aol-console")


def press(page, control: str, reason: str, **fields) -> None:
    form = f"#control-{control}"
    page.fill(f"{form} input[name={control}-reason]", reason)
    for name, value in fields.items():
        if value is True:
            page.check(f"{form} input[name={control}-{name}]")
        else:
            page.fill(f"{form} input[name={control}-{name}]", value)
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("#aol-console")


def enqueue(page, key: str, payload: str, action_type: str = "POST_SOCIAL") -> None:
    """Queue an action from the Actions view's form, then return to the Overview."""
    page.click("#nav-actions")
    page.select_option("#id_enqueue-action_type", action_type)
    page.fill("#id_enqueue-payload", payload)
    page.fill("#id_enqueue-idempotency_key", key)
    page.fill("#id_enqueue-reason", f"browser test: {key}")
    page.click("#enqueue-form button[type=submit]")
    page.wait_for_selector("ul.messagelist")
    page.click("#nav-status")
    page.wait_for_selector("#card-queue")


def count_is(page, status: str, value: int, make_run: "MakeRun") -> None:
    """Wait until the queue card shows ``value`` actions in ``status`` (by the page's own refresh).

    Selectors, never wait_for_function: Playwright evaluates a predicate string in the page, which the
    Content-Security-Policy forbids, as it forbids every eval.
    """
    try:
        page.wait_for_selector(f"#card-queue [data-field='counts.{status}']:text-is('{value}')", timeout=30_000)
    except Exception:
        raise AssertionError(
            f"{status} never reached {value}; queue card: {page.inner_text('#card-queue')!r}\n"
            f"last tick: {page.inner_text('#card-tick')!r}\nmake run's output:\n{make_run.output()[-4000:]}"
        ) from None


def test_make_run__kill_keeps_the_console_up_and_revive_brings_work_back(make_run, watched_page, screenshot):
    page = watched_page
    log_in(page, make_run.url)
    page.wait_for_selector("#lease-light.light-green")
    assert page.inner_text("#banner-mode").startswith("PROOF MODE")  # a fresh database's default
    assert page.inner_text("#flags-last-change") == "none yet: the defaults"

    press(page, "kill", "browser test: kill under make run", confirm=True)
    page.wait_for_selector("#banner-killed:not([hidden])")
    page.wait_for_selector("#daemon-hint:has-text('waits for a revive')", timeout=30_000)
    page.wait_for_selector("#card-tick .badge-KILLED")
    # The console is still served (honcho did not end everything): a fresh load works.
    assert make_run.running(), make_run.output()
    page.reload()
    page.wait_for_selector("#banner-killed:not([hidden])")
    enqueue(page, "while-killed", '{"platform": "twitter", "message": "queued while killed"}')
    count_is(page, "PENDING", 1, make_run)
    screenshot("make-run-killed-console-up")

    press(page, "revive", "browser test: revive under make run")
    page.wait_for_selector("#banner-killed[hidden]", state="attached")
    count_is(page, "SUCCESS", 1, make_run)  # the queued action ran, and nobody opened a shell
    page.wait_for_selector("#lease-light.light-green")
    assert page.is_hidden("#daemon-hint")
    assert make_run.running()
    assert "Revived: resuming work." in make_run.output()
    screenshot("make-run-revived")
    assert_clean(page)


def test_make_run__real_takes_effect_and_reaches_the_approval_flow(make_run, watched_page, screenshot):
    page = watched_page
    log_in(page, make_run.url)
    page.wait_for_selector("#lease-light.light-green")
    press(page, "real", "browser test: REAL under make run", confirmation="REAL")
    # The daemon applies REAL: the Procfile no longer forces --proof.
    page.wait_for_selector("#banner-mode.mode-real")
    assert page.is_hidden("#mode-note") and page.is_hidden("#mode-forced")
    assert page.inner_text("[data-field='flags.requested_mode']") == "REAL"

    # SEND_EMAIL has a REAL integration and is gated: in REAL it runs in PROOF first and waits for a
    # person. (POST_SOCIAL has no REAL integration: REAL refuses it outright, nobody is asked.)
    enqueue(
        page,
        "real-email",
        '{"to": "ann@example.com", "subject": "Product day", "body": "Our office opens Monday"}',
        action_type="SEND_EMAIL",
    )
    count_is(page, "AWAITING_APPROVAL", 1, make_run)
    page.click("#nav-approvals")
    page.wait_for_selector("#approvals-table tbody tr[data-action-id] a.button")
    screenshot("make-run-real-awaiting-approval")
    page.click("#approvals-table tbody tr[data-action-id] a.button")
    page.wait_for_selector("#artifact-content")
    assert "Our office opens Monday" in page.inner_text("#artifact-content")
    assert page.is_visible("#approve-form")
    screenshot("make-run-real-approval-page")
    assert_clean(page)
    # The admin under the same policy: its pages load their scripts and styles without a violation.
    page.goto(f"{make_run.url}/admin/orchestration/action/")
    page.wait_for_selector("#result_list")
    assert_clean(page)
