"""Issue 15's hardening, through Django's test client: CSP, lockout by username and address, the
lockout page, off-site ?next=, the favicon, admin dates, the flags' "Last change" and the LLM card."""

import io
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from llm.client import llm_client_get
from llm.exceptions import LLMCallFailed
from orchestration.services.logs import log_write
from tests.console_fixtures import PASSWORD, client_for

pytestmark = pytest.mark.django_db

LOGIN_URL = reverse("admin:login")
STATUS_URL = reverse("orchestration:status")
JSON_URL = reverse("orchestration:status_json")
LLM_KEY = "sk-test-hardening-KEY-77a1"


def login(client: Client, username: str, password: str, next_url: str = "/admin/"):
    return client.post(LOGIN_URL, {"username": username, "password": password, "next": next_url})


@pytest.fixture
def lockout_after_three(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def csp_directives(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


def test_csp__every_page_is_served_with_a_policy_that_allows_no_inline_code(superuser):
    client = client_for(superuser)
    pages = [
        STATUS_URL,
        reverse("admin:index"),
        reverse("orchestration:diagnostics"),
        reverse("orchestration:approvals"),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        directives = csp_directives(response)
        assert directives["script-src"] == "script-src 'self'", url
        assert directives["style-src"] == "style-src 'self'", url
        assert directives["frame-ancestors"] == "frame-ancestors 'none'"
        assert "unsafe-inline" not in response["Content-Security-Policy"]
        assert "unsafe-eval" not in response["Content-Security-Policy"]
        page = response.content.decode()
        # Nothing the policy would block: no style attribute, no <style>, no inline script (a JSON data
        # block is not executed, so the policy allows it).
        assert " style=" not in page and "<style" not in page, url
        for tag in re.findall(r"<script\b[^>]*>", page):
            assert "src=" in tag or 'type="application/json"' in tag, (url, tag)
    assert "Content-Security-Policy" in Client().get(LOGIN_URL)


def test_login__lockout_counts_by_username_and_address_so_other_users_still_sign_in(
    superuser, operator, lockout_after_three
):
    client = Client()
    for _ in range(3):
        login(client, "root", "wrong")
    locked = login(client, "root", PASSWORD)
    assert locked.status_code == 429
    # Another user behind the same address (one proxy, one office) is not locked out by root's typos.
    assert login(Client(), operator.username, PASSWORD).status_code == 302


def test_lockout_page__is_branded_and_says_how_to_unlock(superuser, lockout_after_three):
    client = Client()
    for _ in range(3):
        response = login(client, "root", "wrong")
    page = response.content.decode()
    assert response.status_code == 429
    assert "AICMO operator console" in page and "Django administration" not in page
    assert "python manage.py axes_reset_username root" in page
    assert "python manage.py axes_reset</code>" in page
    # And the command does what the page says.
    call_command("axes_reset_username", "root", stdout=io.StringIO())
    assert login(Client(), "root", PASSWORD).status_code == 302


def test_login__an_off_site_next_lands_on_the_console(superuser):
    client = Client()
    response = login(client, "root", PASSWORD, next_url="https://evil.example/steal")
    assert response.status_code == 302
    assert response["Location"] == STATUS_URL
    assert client.get(response["Location"]).status_code == 200


def test_favicon__served_locally():
    response = Client().get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")


def test_admin__dates_are_shown_as_the_console_shows_them_with_the_zone(superuser):
    log_write(level="INFO", message="a dated row", actor="test")
    page = client_for(superuser).get(reverse("admin:orchestration_executionlog_changelist")).content.decode()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page), "no 2026-11-30 19:07:07 UTC style date"
    assert not re.search(r"\b(a|p)\.m\.", page)


def test_status_view__flags_never_changed_say_so_instead_of_a_dash(viewer):
    page = client_for(viewer).get(STATUS_URL).content.decode()
    assert 'data-format="lastchange">none yet: the defaults</dd>' in page
    assert "—, " not in page


def test_status_view__llm_card_says_when_calls_fail_and_when_they_work_again(viewer, settings, openai_server):
    settings.OPENAI_API_KEY = LLM_KEY
    settings.AICMO_USE_LLM = True
    settings.OPENAI_BASE_URL = openai_server.base_url
    settings.AICMO_LLM_MAX_RETRIES = 0
    client = client_for(viewer)
    assert client.get(JSON_URL).json()["llm"]["reason"] == "enabled; not called yet"

    openai_server.mode = "500"
    with pytest.raises(LLMCallFailed):
        llm_client_get().complete(system="s", prompt="p")
    llm = client.get(JSON_URL).json()["llm"]
    assert llm["enabled"] is True and llm["calls_failing"] is True
    assert llm["reason"].startswith("enabled, but the last 1 call(s) failed; the latest at ")
    assert "HTTP 500" in llm["reason"]
    page = client.get(STATUS_URL).content.decode()
    assert 'class="aol-card card-warn" id="card-llm"' in page and "the model server fell over" in page
    assert LLM_KEY not in page

    openai_server.mode = "ok"
    llm_client_get().complete(system="s", prompt="p")
    llm = client.get(JSON_URL).json()["llm"]
    assert llm["calls_failing"] is False and llm["reason"].startswith("enabled; last call succeeded at ")


def test_status_view__no_daemon_says_what_to_run(viewer):
    data = client_for(viewer).get(JSON_URL).json()
    assert data["daemon_hint"].startswith("No daemon is running: start one: `make run`")
    assert "python manage.py run_aol_daemon" in client_for(viewer).get(STATUS_URL).content.decode()


def test_status_view__killed_with_no_daemon_says_revive_then_start_one(viewer):
    from orchestration.services.control import control_kill

    control_kill(actor="boss", reason="stop")
    data = client_for(viewer).get(JSON_URL).json()
    assert data["daemon_hint"].startswith("Killed, and no daemon is running. Revive, then start one")


def test_status_view__a_killed_daemon_holding_the_lease_is_shown_waiting(viewer):
    from orchestration.services.control import control_kill
    from orchestration.services.lease import lease_acquire_or_renew

    lease_acquire_or_renew(owner="host:1:aa", ttl_seconds=30)
    control_kill(actor="boss", reason="stop")
    data = client_for(viewer).get(JSON_URL).json()
    assert data["daemon_hint"].startswith("Killed: the daemon host:1:aa runs nothing and waits for a revive")


def test_status_view__real_applied_when_the_running_daemon_is_not_forced(viewer):
    from orchestration.services.control import control_set_proof_mode
    from orchestration.services.lease import lease_acquire_or_renew

    control_set_proof_mode(enabled=False, actor="boss", reason="go live")
    lease_acquire_or_renew(owner="host:1:aa", ttl_seconds=30)
    flags = client_for(viewer).get(JSON_URL).json()["flags"]
    assert (flags["requested_mode"], flags["applied_mode"], flags["mode"], flags["mode_note"]) == (
        "REAL",
        "REAL",
        "REAL",
        "",
    )
