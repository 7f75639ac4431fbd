"""Who may talk to the MCP server: stdio refuses to start without a live token; over HTTP every request
needs one (401 otherwise), each call runs with its own request's token, and revoking one ends it at once.
The token's secret appears in no output."""

import json
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import timedelta

import anyio.to_thread
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from orchestration.models import Action, ApiToken, AuditEntry
from orchestration.services.tokens import token_revoke
from tests.conftest import ROOT
from tests.mcp.conftest import POST, converse, text

pytestmark = pytest.mark.django_db(transaction=True)

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def expire(name: str) -> None:
    token = ApiToken.objects.get(name=name)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=token.created_at - timedelta(days=1))


def refused_token(case: str, make_token) -> tuple[str, str]:
    """(the AOL_MCP_TOKEN value, what the refusal says) for each way a token is not live."""
    if case == "missing":
        return "", "Set AOL_MCP_TOKEN"
    if case == "unknown":
        return "aol_" + "x" * 43, "not known"
    if case == "malformed":
        return "hunter2-not-a-token", "valid API token"
    secret = make_token("read,propose", name=case)
    if case == "revoked":
        token_revoke(name=case, actor="cli:ops@test", reason="leaked")
        return secret, "was revoked"
    expire(case)
    return secret, "expired"


# One database is enough: the refusal is the command's own check of a token row, a process per case.
@pytest.mark.sqlite_only
@pytest.mark.parametrize("case", ["missing", "unknown", "malformed", "revoked", "expired"])
def test_stdio__refuses_to_start_without_a_live_token_and_never_prints_it(case, make_token, daemon_env, settings):
    secret, why = refused_token(case, make_token)
    process = subprocess.run(
        [sys.executable, "manage.py", "aol_mcp"],
        cwd=ROOT,
        env={**daemon_env, "AOL_MCP_TOKEN": secret},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 1, process.stderr
    assert why in process.stderr and process.stdout == ""
    assert not secret or secret not in process.stdout + process.stderr

    settings.AOL_MCP_TOKEN = secret
    with pytest.raises(CommandError, match=why) as refused:
        call_command("aol_mcp")
    assert refused.value.returncode == 1 and (not secret or secret not in str(refused.value))


def post(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict, str]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@pytest.mark.postgres_only  # the HTTP transport's refusals, once: on PostgreSQL (the deployed transport)
@pytest.mark.parametrize("case", ["missing", "unknown", "malformed", "revoked", "expired", "basic"])
def test_http__a_request_without_a_live_bearer_token_gets_401_problem_json(case, make_token, mcp_http):
    if case == "basic":
        secret = make_token("read", name="basic")
        header, why = {"Authorization": f"Basic {secret}"}, "valid API token"
    else:
        secret, why = refused_token(case, make_token)
        if case == "missing":
            header, why = {}, "valid API token"
        else:
            header = {"Authorization": f"Bearer {secret}"}
    status, headers, body = post(mcp_http.url, INITIALIZE, header)
    assert status == 401, body
    assert headers["content-type"] == "application/problem+json" and headers["www-authenticate"].startswith("Bearer")
    problem = json.loads(body)
    assert problem["status"] == 401 and problem["title"] == "Unauthorized" and why in problem["detail"]
    assert not secret or secret not in body

    async def script():
        async with mcp_http.client(None if case in ("missing", "basic") else secret) as client:
            await client.list_tools()

    with pytest.raises(Exception):  # noqa: B017  (the SDK's client gives up; which error it raises is its own)
        converse(script)
    assert not secret or secret not in mcp_http.output()


def test_http__each_call_runs_with_the_token_of_its_own_request_and_a_revoked_one_stops_at_once(make_token, mcp_http):
    reader = make_token("read", name="reader")
    proposer = make_token("read,propose", name="proposer")

    async def both():
        async with mcp_http.client(reader) as as_reader, mcp_http.client(proposer) as as_proposer:
            return [
                await as_reader.call_tool("propose_action", {**POST, "idempotency_key": "r"}),
                await as_proposer.call_tool("propose_action", {**POST, "idempotency_key": "p"}),
                await as_reader.call_tool("list_actions", {}),
            ]

    refused, proposed, listed = converse(both)
    assert refused.is_error and "'reader' lacks the 'propose' scope" in text(refused)
    assert proposed.is_error is False and listed.is_error is False
    assert [a["idempotency_key"] for a in listed.structured_content["actions"]] == ["p"]
    assert list(Action.objects.values_list("idempotency_key", flat=True)) == ["p"]
    assert AuditEntry.objects.filter(actor="token:proposer", verb="enqueue").count() == 1
    assert not AuditEntry.objects.filter(actor="token:reader").exists()

    status, _, body = post(mcp_http.url, INITIALIZE, {"Authorization": f"Bearer {proposer}"})
    assert status == 200, body
    token_revoke(name="proposer", actor="cli:ops@test", reason="rotated")
    status, _, body = post(mcp_http.url, INITIALIZE, {"Authorization": f"Bearer {proposer}"})
    assert status == 401 and "'proposer' was revoked" in json.loads(body)["detail"]
    for secret in (reader, proposer):
        assert secret not in mcp_http.output()


def test_stdio__a_token_revoked_while_serving_is_refused_at_the_next_call(make_token, mcp_stdio):
    secret = make_token("read,propose", name="rotating")

    async def script():
        async with mcp_stdio(secret) as client:
            before = await client.call_tool("list_actions", {})
            await client_revokes()
            after = await client.call_tool("propose_action", POST)
            return before, after

    def revoke() -> None:  # on a worker thread: the ORM is not for the event loop's thread
        try:
            token_revoke(name="rotating", actor="cli:ops@test", reason="rotated")
        finally:
            connection.close()

    async def client_revokes():
        await anyio.to_thread.run_sync(revoke)

    before, after = converse(script)
    assert before.is_error is False
    assert after.is_error and text(after) == "Token refused: The API token 'rotating' was revoked."
    assert Action.objects.count() == 0
    assert secret not in mcp_stdio.logs()
