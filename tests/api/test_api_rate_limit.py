"""The per-token write rate limit (AOL_API_WRITES_PER_MINUTE): 429 with Retry-After, one count across processes."""

import json

import pytest

from orchestration.checks import check_api_settings
from orchestration.dbclock import db_now
from orchestration.models import Action
from tests.api.conftest import POST
from tests.conftest import test_database_url

PROBLEM = "application/problem+json"


@pytest.mark.django_db
def test_rate_limit__the_write_past_the_limit_gets_429_with_retry_after_and_writes_nothing(api_client, settings):
    settings.AOL_API_WRITES_PER_MINUTE = 3
    client = api_client("read,propose,cancel")
    other = api_client("propose")
    answers = [client.post("/api/v1/actions", {**POST, "idempotency_key": f"k{n}"}).status_code for n in range(3)]
    assert answers == [201, 201, 201]
    refused = client.post("/api/v1/actions", {**POST, "idempotency_key": "k3"})
    assert refused.status_code == 429 and refused["Content-Type"] == PROBLEM
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "AOL_API_WRITES_PER_MINUTE" in refused.json()["detail"]
    assert client.post("/api/v1/actions/1/cancel").status_code == 429  # every write counts against one limit
    assert client.get("/api/v1/actions").status_code == 200  # reads are not limited
    assert other.post("/api/v1/actions", {**POST, "idempotency_key": "o"}).status_code == 201  # per token
    assert Action.objects.count() == 4


@pytest.mark.django_db
def test_rate_limit__zero_means_no_limit(api_client, settings):
    settings.AOL_API_WRITES_PER_MINUTE = 0
    client = api_client("propose")
    assert all(client.post("/api/v1/actions", POST).status_code == 201 for _ in range(5))


def _minute() -> int:
    return int(db_now().timestamp()) // 60


@pytest.mark.django_db(transaction=True)
def test_rate_limit__counts_across_server_processes(make_token, start_web_server):
    """Two server processes on one database share the count: the limit is never per process."""
    url = test_database_url()
    servers = [start_web_server(url, AOL_API_WRITES_PER_MINUTE="4") for _ in range(2)]
    for attempt in range(3):  # again if a minute's boundary (which restarts the count) fell inside
        _, secret = make_token("propose", name=f"shared-{attempt}")
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        start, statuses = _minute(), []
        for n in range(6):
            body = json.dumps({**POST, "idempotency_key": f"a{attempt}-{n}"}).encode()
            status, _, response_headers = servers[n % 2].request("/api/v1/actions", headers=headers, data=body)
            statuses.append(status)
            assert status != 429 or int(response_headers["Retry-After"]) >= 1
        if _minute() == start:
            break
    assert statuses == [201, 201, 201, 201, 429, 429]
    assert Action.objects.filter(idempotency_key__startswith=f"a{attempt}-").count() == 4


@pytest.mark.parametrize("value", [-1, "many", 2.5, True])
def test_rate_limit__a_bad_setting_is_a_check_error_naming_it(settings, value):
    settings.AOL_API_WRITES_PER_MINUTE = value
    (error,) = check_api_settings()
    assert error.id == "orchestration.E080" and "AOL_API_WRITES_PER_MINUTE" in error.msg


def test_rate_limit__zero_and_positive_settings_pass_the_check(settings):
    for value in (0, 1, 600):
        settings.AOL_API_WRITES_PER_MINUTE = value
        assert check_api_settings() == []
