"""Login throttling (django-axes), the trusted-proxy client address, and `check --deploy`."""

import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from orchestration.security import client_ip
from tests.conftest import ROOT
from tests.console_fixtures import PASSWORD

LOGIN_URL = reverse("admin:login")


def login(client: Client, password: str, **headers):
    return client.post(LOGIN_URL, {"username": "root", "password": password, "next": "/admin/"}, **headers)


@pytest.fixture
def lockout_after_three(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


@pytest.mark.django_db
def test_login__locked_out_with_429_after_the_configured_failures(superuser, lockout_after_three):
    client = Client()
    for _ in range(2):
        response = login(client, "wrong")
        assert response.status_code == 200  # the form again, with its error
    response = login(client, "wrong")
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    # Now even the right password is refused, and no session is opened.
    response = login(client, PASSWORD)
    assert response.status_code == 429
    assert client.get(reverse("orchestration:status")).status_code == 302


@pytest.mark.django_db
def test_login__right_password_before_the_limit_logs_in(superuser, lockout_after_three):
    client = Client()
    login(client, "wrong")
    response = login(client, PASSWORD)
    assert response.status_code == 302
    assert client.get(reverse("orchestration:status")).status_code == 200


@pytest.mark.django_db
def test_login__lockout_ends_after_the_cool_off(superuser, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    client = Client()
    login(client, "wrong")
    assert login(client, "wrong").status_code == 429
    time.sleep(1.5)
    assert login(client, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_login__forged_x_forwarded_for_does_not_dodge_the_lockout(superuser, lockout_after_three, settings):
    settings.AICMO_TRUSTED_PROXY_HOPS = 0
    client = Client()
    for n in range(3):
        login(client, "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert login(client, PASSWORD, HTTP_X_FORWARDED_FOR="10.0.0.99").status_code == 429


@pytest.mark.django_db
def test_login__behind_a_trusted_proxy_each_client_is_locked_out_on_its_own(superuser, lockout_after_three, settings):
    settings.AICMO_TRUSTED_PROXY_HOPS = 1
    proxy = {"REMOTE_ADDR": "10.1.1.1"}
    for _ in range(3):
        login(Client(), "wrong", HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy)
    assert login(Client(), PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code == 429
    assert login(Client(), PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.2", **proxy).status_code == 302


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (0, "1.2.3.4", "10.0.0.1"),  # no trusted proxy: the header is the client's own claim
        (1, "1.2.3.4", "1.2.3.4"),
        (1, "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the client prepended a forged entry
        (2, "6.6.6.6, 1.2.3.4, 10.9.9.9", "1.2.3.4"),
        (2, "1.2.3.4", "10.0.0.1"),  # fewer entries than trusted hops: did not come through them
        (1, "not-an-ip", "10.0.0.1"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip__trusts_only_the_configured_proxy_hops(hops, forwarded, expected, settings):
    settings.AICMO_TRUSTED_PROXY_HOPS = hops
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


@pytest.mark.django_db
def test_admin_login__cannot_be_framed():
    assert Client().get(LOGIN_URL)["X-Frame-Options"] == "DENY"


def run_check_deploy(tmp_path, **env_overrides) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AOL_", "SECURE_", "AICMO_"))}
    env.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "aicmo.example.com",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
            "DJANGO_SETTINGS_MODULE": "aicmo_site.settings",
            **env_overrides,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy__clean_under_production_settings(tmp_path):
    result = run_check_deploy(tmp_path, AICMO_HTTPS="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy__without_https_settings_warns(tmp_path):
    result = run_check_deploy(tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for check_id in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check_id in output


def test_check_deploy__debug_on_is_reported(tmp_path):
    result = run_check_deploy(tmp_path, AICMO_HTTPS="1", DEBUG="1")
    assert "security.W018" in result.stdout + result.stderr
