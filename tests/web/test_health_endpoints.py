"""/healthz and /readyz: no login, no secrets, and readiness that follows the database."""

import sqlite3

import pytest

from orchestration.services.health import database_probe, settings_dict_from_url

pytestmark = pytest.mark.django_db


def test_healthz__answers_without_login_or_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_readyz__migrated_database_is_ready(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_database_probe__unreachable_server_is_not_ready_with_a_generic_public_reason():
    probe = database_probe(settings_dict=settings_dict_from_url("postgres://postgres:pw-probe@127.0.0.1:1/x"))
    assert not probe.reachable and not probe.ready
    assert probe.public_reason == "database unreachable"
    assert "Connection refused" in probe.reason
    assert "pw-probe" not in probe.reason


def test_database_probe__empty_database_lists_unapplied_migrations(tmp_path):
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()
    probe = database_probe(settings_dict=settings_dict_from_url(f"sqlite:///{empty}"))
    assert probe.reachable and not probe.ready
    assert "orchestration.0001_initial" in probe.unapplied
    assert probe.public_reason == f"{len(probe.unapplied)} migration(s) not applied"
    assert not probe.auth_available


def test_database_probe__missing_sqlite_file_is_not_created(tmp_path):
    missing = tmp_path / "missing.sqlite3"
    probe = database_probe(settings_dict=settings_dict_from_url(f"sqlite:///{missing}"))
    assert not probe.reachable
    assert not missing.exists()


@pytest.mark.django_db(transaction=True)
def test_readyz__flips_between_200_and_503_as_the_database_goes_and_comes(start_web_server, database_switch):
    server = start_web_server(database_switch.url)
    status, body, _ = server.request("/readyz")
    assert (status, body) == (200, '{"status": "ready"}'), server.output()
    database_switch.down()
    status, body, _ = server.request("/readyz")
    assert status == 503
    assert body == '{"status": "unavailable", "reason": "database unreachable"}'
    assert server.request("/healthz")[0] == 200  # the process still answers
    database_switch.up()
    status, body, _ = server.request("/readyz")
    assert (status, body) == (200, '{"status": "ready"}')


@pytest.mark.django_db(transaction=True)
def test_readyz__unmigrated_database_is_503_with_the_count(start_web_server, tmp_path):
    empty = tmp_path / "fresh.sqlite3"
    sqlite3.connect(empty).close()
    server = start_web_server(f"sqlite:///{empty}")
    status, body, _ = server.request("/readyz")
    assert status == 503
    assert "migration(s) not applied" in body
