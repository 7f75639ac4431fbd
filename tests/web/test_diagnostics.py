"""The diagnostics page: staff only while sign-in works, and still useful when the database is down."""

import sqlite3
from http.cookies import SimpleCookie

import pytest
from django.core.management import call_command
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from django.urls import reverse

from orchestration.models import AuditEntry, AuditOutcome, ExecutionLog
from orchestration.web.health import STAFF_COOKIE

pytestmark = pytest.mark.django_db

URL = "/console/diagnostics/"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("oncall", password="x" * 12, is_staff=True)


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", password="x" * 12)


def test_diagnostics__url_name_is_orchestration_diagnostics():
    assert reverse("orchestration:diagnostics") == URL


def test_diagnostics__anonymous_goes_to_the_login_page(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


def test_diagnostics__non_staff_goes_to_the_login_page(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("someone", password="x" * 12))
    assert client.get(URL).status_code == 302


def test_diagnostics__staff_sees_configuration_without_secrets(client, staff, settings):
    settings.OPENAI_API_KEY = "sk-diagnostics-secret"
    client.force_login(staff)
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "DATABASE_URL" in html
    assert "OpenAI key set</th><td>yes" in html
    assert "sk-diagnostics-secret" not in html
    assert "Django</th><td>5." in html
    assert "Apply migrations</button>" not in html  # staff, not superuser
    assert "Only superusers may apply migrations here." in html
    assert STAFF_COOKIE in response.cookies
    assert response.cookies[STAFF_COOKIE]["httponly"] and response.cookies[STAFF_COOKIE]["samesite"] == "Strict"


def test_diagnostics__run_sentinels_on_demand(client, staff):
    client.force_login(staff)
    assert "orchestration.S005" not in client.get(URL).content.decode()
    html = client.get(URL, {"run": "sentinels"}).content.decode()
    for name in ("Python runtime", "Database connectivity", "AOL tables", "Migrations", "LLM", "Status view"):
        assert name in html
    assert "orchestration.S005" in html


def test_diagnostics__validate_a_typed_url_shows_only_its_masked_form(client, staff):
    client.force_login(staff)
    response = client.post(
        URL, {"operation": "validate_url", "url": "postgresql+asyncpg://app:typed-secret@db.internal/aicmo"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "postgresql+asyncpg://app:***@db.internal/aicmo" in html
    assert "names the async driver" in html
    assert "typed-secret" not in html


def test_diagnostics__validate_the_configured_url(client, staff):
    client.force_login(staff)
    html = client.post(URL, {"operation": "validate_url", "url": ""}).content.decode()
    assert "the configured DATABASE_URL" in html
    assert 'Valid</th><td class="ok">yes' in html


def test_diagnostics__post_without_csrf_token_is_refused(staff):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.post(URL, {"operation": "validate_url"}).status_code == 403


def test_diagnostics__staff_cannot_apply_migrations(client, staff):
    client.force_login(staff)
    response = client.post(URL, {"operation": "migrate", "confirm": "migrate"})
    assert response.status_code == 403
    assert not ExecutionLog.objects.exists()


def test_diagnostics__migrate_needs_the_typed_confirmation(client, superuser):
    client.force_login(superuser)
    html = client.post(URL, {"operation": "migrate", "confirm": "yes"}).content.decode()
    assert "Type &#x27;migrate&#x27; to confirm; nothing was applied." in html
    assert not ExecutionLog.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_diagnostics__superuser_applies_missing_migrations_and_sees_the_output(client, superuser):
    call_command("migrate", "orchestration", "0001", verbosity=0)
    assert not MigrationRecorder.Migration.objects.filter(app="orchestration", name="0002_singleton_rows").exists()
    client.force_login(superuser)
    before = client.get(URL).content.decode()
    assert "Apply migrations</button>" in before
    assert "orchestration.0002_singleton_rows" in before
    html = client.post(URL, {"operation": "migrate", "confirm": "migrate"}).content.decode()
    assert "Applying orchestration.0002_singleton_rows... OK" in html
    assert "All migrations are applied." in html
    assert MigrationRecorder.Migration.objects.filter(app="orchestration", name="0002_singleton_rows").exists()
    log = ExecutionLog.objects.get()
    assert log.actor == "web:root" and "migrations applied from the diagnostics page by root" in log.message


@pytest.mark.django_db(transaction=True)
def test_diagnostics__applying_migrations_writes_an_audit_row_naming_the_superuser(client, superuser):
    call_command("migrate", "orchestration", "0001", verbosity=0)
    client.force_login(superuser)
    client.post(URL, {"operation": "migrate", "confirm": "migrate"})
    audit = AuditEntry.objects.get()
    assert (audit.actor, audit.verb, audit.outcome, audit.target) == (
        "root",
        "apply migrations",
        AuditOutcome.DONE,
        "database schema",
    )
    assert audit.after["migrations_applied"] >= 1 and "diagnostics page" in audit.reason


@pytest.mark.django_db(transaction=True)
def test_diagnostics__renders_with_the_database_down(start_web_server, database_switch, staff):
    session_client = Client()
    session_client.force_login(staff)
    session = session_client.cookies["sessionid"].value
    database_switch.copy_now()
    server = start_web_server(database_switch.url)

    status, html, headers = server.request(URL, headers={"Cookie": f"sessionid={session}"})
    assert status == 200, server.output()
    staff_cookie = SimpleCookie(headers["Set-Cookie"])[STAFF_COOKIE].value

    database_switch.down()
    status, html, _ = server.request(URL)
    assert status == 503
    assert "Sign-in is unavailable: database unreachable." in html
    assert "python manage.py check_sentinels" in html
    assert "DATABASE_URL</th>" not in html and "Django</th>" not in html  # nothing more for strangers

    cookies = f"sessionid={session}; {STAFF_COOKIE}={staff_cookie}"
    status, html, _ = server.request(URL, headers={"Cookie": cookies})
    assert status == 503
    assert "recognised as staff user <strong>oncall</strong>" in html
    assert "DATABASE_URL</th>" in html and "Django</th>" in html
    assert "Apply migrations</button>" not in html
    status, html, _ = server.request(f"{URL}?run=sentinels", headers={"Cookie": cookies})
    assert status == 503
    assert "Database connectivity" in html and "fail" in html

    forged = f"{STAFF_COOKIE}=oncall"
    status, html, _ = server.request(URL, headers={"Cookie": forged})
    assert "DATABASE_URL</th>" not in html


@pytest.mark.django_db(transaction=True)
def test_diagnostics__renders_on_an_unmigrated_database(start_web_server, tmp_path):
    empty = tmp_path / "fresh.sqlite3"
    sqlite3.connect(empty).close()
    server = start_web_server(f"sqlite:///{empty}")
    status, html, _ = server.request(URL)
    assert status == 503
    assert "migration(s) not applied" in html
    assert "Traceback" not in html
