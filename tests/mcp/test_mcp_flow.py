"""What an agent does through the MCP server, over stdio and over streamable HTTP, with a real daemon:
list the tools, propose, follow, list, read the PROOF artifact, cancel; and what it cannot do."""

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from django.utils import timezone

from orchestration.adapters.artifacts import artifact_path, sha256_bytes
from orchestration.api.schemas import REAL_NOTE, ActionProposal
from orchestration.models import Action, ActionStatus, AuditEntry, ControlFlags, ExecutionLog
from orchestration.services.control import control_flags_get
from orchestration.services.enqueue import action_enqueue
from tests.mcp.conftest import PEOPLE_ONLY_WORDS, POST, TOOLS, converse, text

pytestmark = pytest.mark.django_db(transaction=True)

#: Each transport runs on one database (the tools' database work is the same under both): stdio, the one
#: a local planner starts, on SQLite; HTTP, the deployed one, on PostgreSQL.
TRANSPORTS = [
    pytest.param("stdio", marks=pytest.mark.sqlite_only),
    pytest.param("http", marks=pytest.mark.postgres_only),
]


@pytest.fixture
def connect(request, mcp_stdio):
    """``connect(secret)``: a client over the transport the test is parametrized with."""
    if request.param == "stdio":
        return mcp_stdio
    server = request.getfixturevalue("mcp_http")
    return server.client


def server_output(request, mcp_stdio) -> str:
    if "mcp_http" in request.fixturenames:
        return request.getfixturevalue("mcp_http").output()
    return mcp_stdio.logs()


@pytest.mark.parametrize("connect", TRANSPORTS, indirect=True)
def test_tools__are_the_six_planner_tools_none_of_which_approves_and_all_say_real_waits_for_a_person(
    connect, make_token
):
    secret = make_token("read")

    async def script():
        async with connect(secret) as client:
            return (await client.list_tools()).tools

    tools = {tool.name: tool for tool in converse(script)}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert not any(word in name for word in PEOPLE_ONLY_WORDS), name
        assert REAL_NOTE in tool.description and "wait for a person to approve" in tool.description
    assert tools["propose_action"].input_schema == ActionProposal.model_json_schema()
    assert tools["get_action"].annotations.read_only_hint is True
    assert tools["cancel_action"].annotations.read_only_hint is False


async def planner_flow(client, later: str) -> dict:
    """Propose, repeat, conflict, wait for the daemon, get, list, read, cancel: every answer, by step."""
    seen: dict = {}
    seen["proposed"] = await client.call_tool("propose_action", {**POST, "idempotency_key": "mcp-1"})
    seen["again"] = await client.call_tool("propose_action", {**POST, "idempotency_key": "mcp-1"})
    seen["conflict"] = await client.call_tool(
        "propose_action", {**POST, "idempotency_key": "mcp-1", "payload": {"platform": "x", "message": "other"}}
    )
    seen["waiting"] = await client.call_tool(
        "propose_action", {**POST, "idempotency_key": "mcp-2", "not_before": later, "reason": "for next week"}
    )
    first = seen["proposed"].structured_content["action"]["id"]
    with anyio.fail_after(30):
        while True:
            seen["done"] = await client.call_tool("get_action", {"action_id": first})
            if seen["done"].structured_content["status"] == ActionStatus.SUCCESS:
                break
            await anyio.sleep(0.1)
    seen["page1"] = await client.call_tool("list_actions", {"limit": 1})
    seen["page2"] = await client.call_tool(
        "list_actions", {"limit": 1, "after": seen["page1"].structured_content["next_after"]}
    )
    seen["succeeded"] = await client.call_tool("list_actions", {"status": "SUCCESS", "action_type": "POST_SOCIAL"})
    seen["artifact"] = await client.call_tool("read_artifact", {"action_id": first})
    second = seen["waiting"].structured_content["action"]["id"]
    seen["no_artifact"] = await client.call_tool("read_artifact", {"action_id": second})
    seen["cancelled"] = await client.call_tool("cancel_action", {"action_id": second, "reason": "plan changed"})
    seen["cancel_done"] = await client.call_tool("cancel_action", {"action_id": first})
    seen["status"] = await client.call_tool("get_status", {})
    return seen


@pytest.mark.parametrize("connect", TRANSPORTS, indirect=True)
def test_planner__proposes_follows_reads_and_cancels_while_a_real_daemon_runs_the_action_in_proof(
    request, connect, make_token, start_daemon, mcp_stdio
):
    secret = make_token("read,propose,cancel")
    daemon = start_daemon("--proof")
    later = (datetime.now(UTC) + timedelta(days=7)).isoformat()

    async def script():
        async with connect(secret) as client:
            return await planner_flow(client, later)

    seen = converse(script)
    errors = {step: text(result) for step, result in seen.items() if result.is_error}
    assert set(errors) == {"conflict", "no_artifact", "cancel_done"}, errors
    assert "Conflict (idempotency_key)" in errors["conflict"] and "different payload" in errors["conflict"]
    assert "no artifact yet" in errors["no_artifact"]
    assert errors["cancel_done"].startswith("Conflict") and "SUCCESS" in errors["cancel_done"]

    proposed, again = seen["proposed"].structured_content, seen["again"].structured_content
    assert proposed["created"] is True and again["created"] is False
    assert again["action"]["id"] == proposed["action"]["id"]
    first = Action.objects.get(idempotency_key="mcp-1")
    second = Action.objects.get(idempotency_key="mcp-2")
    assert first.status == ActionStatus.SUCCESS and second.status == ActionStatus.CANCELLED

    done = seen["done"].structured_content
    log = ExecutionLog.objects.filter(action_id=first.pk).exclude(artifact_ref="").get()
    assert done["artifact"]["sha256"] == log.artifact_sha256 and done["payload"] == POST["payload"]
    assert done["approval"]["state"] == "not required" and done["attempts"] == 1

    page1, page2 = seen["page1"].structured_content, seen["page2"].structured_content
    assert [a["id"] for a in page1["actions"]] == [first.pk] and page1["next_after"] == first.pk
    assert [a["id"] for a in page2["actions"]] == [second.pk] and page2["next_after"] is None
    assert [a["id"] for a in seen["succeeded"].structured_content["actions"]] == [first.pk]

    artifact = seen["artifact"].structured_content
    on_disk = artifact_path(log.artifact_ref).read_bytes()
    assert artifact["content"] == on_disk.decode() and "hello from the planner" in artifact["content"]
    assert artifact["sha256"] == sha256_bytes(on_disk) == log.artifact_sha256 and artifact["intact"] is True

    assert seen["cancelled"].structured_content["cancelled"] == [second.pk]
    assert seen["cancelled"].structured_content["action"]["status"] == ActionStatus.CANCELLED
    status = seen["status"].structured_content
    assert status["flags"]["mode"] == "PROOF"

    audit = AuditEntry.objects.filter(actor="token:planner")
    assert {entry.verb for entry in audit} >= {"cancel"} and audit.filter(reason="plan changed").exists()
    assert secret not in server_output(request, mcp_stdio) and secret not in daemon.output()
    stored = [AuditEntry.objects.values(), Action.objects.values(), ExecutionLog.objects.values()]
    assert secret not in repr([list(rows) for rows in stored])


@pytest.mark.parametrize("connect", TRANSPORTS, indirect=True)
def test_scopes__a_call_outside_the_tokens_scopes_is_a_tool_error_and_writes_nothing_and_each_scope_suffices(
    connect, make_token
):
    reader = make_token("read", name="reader")
    proposer = make_token("propose", name="proposer")
    canceller = make_token("cancel", name="canceller")
    waiting, _ = action_enqueue(**POST, idempotency_key="waiting", not_before=timezone.now() + timedelta(days=1))

    async def script():
        async with connect(reader) as client:
            refused = [
                await client.call_tool("propose_action", POST),
                await client.call_tool("cancel_action", {"action_id": 1}),
            ]
            allowed = await client.call_tool("list_actions", {})
        async with connect(proposer) as client:
            refused.append(await client.call_tool("get_status", {}))
            refused.append(await client.call_tool("list_actions", {}))
        async with connect(canceller) as client:
            cancelled = await client.call_tool("cancel_action", {"action_id": waiting.pk})
        return refused, allowed, cancelled

    refused, allowed, cancelled = converse(script)
    assert [result.is_error for result in refused] == [True] * 4
    assert [text(result).split(":")[0] for result in refused] == ["Scope missing"] * 4
    assert "'reader' lacks the 'propose' scope" in text(refused[0])
    assert "lacks the 'cancel' scope" in text(refused[1])
    assert "'proposer' lacks the 'read' scope" in text(refused[2])
    assert allowed.is_error is False and [a["id"] for a in allowed.structured_content["actions"]] == [waiting.pk]
    # cancel without read: done, and the answer leaves out what the token may not read
    assert cancelled.is_error is False, text(cancelled)
    assert cancelled.structured_content["cancelled"] == [waiting.pk] and cancelled.structured_content["action"] is None
    assert list(Action.objects.values_list("pk", "status")) == [(waiting.pk, ActionStatus.CANCELLED)]
    assert set(AuditEntry.objects.filter(actor__startswith="token:").values_list("actor", flat=True)) == {
        "token:canceller"
    }


BAD_CALLS = [
    # (tool, arguments, the field the error names, words of the message)
    ("propose_action", {"payload": {}}, "action_type", "Field required"),
    ("propose_action", {**POST, "priority": "5"}, "priority", "valid integer"),
    ("propose_action", {**POST, "priority": 1000}, "priority", "less than or equal to 100"),
    ("propose_action", {**POST, "colour": "red"}, "colour", "Extra inputs are not permitted"),
    ("propose_action", {**POST, "requires_approval": "yes"}, "requires_approval", "valid boolean"),
    ("propose_action", {**POST, "payload": "hello"}, "payload", "valid dictionary"),
    ("propose_action", {**POST, "action_type": "LAUNCH_ROCKET"}, "action_type", "LAUNCH_ROCKET"),
    ("propose_action", {**POST, "payload": {"platform": "myspace", "message": "hi"}}, "payload", "myspace"),
    ("propose_action", {**POST, "payload": {"platform": "x", "message": "m" * 70_000}}, "payload", ""),
    ("propose_action", {**POST, "not_before": "2030-01-01T09:00:00"}, "not_before", "timezone"),
    ("propose_action", {**POST, "not_before": "next tuesday"}, "not_before", "datetime"),
    ("propose_action", {**POST, "idempotency_key": "bad\x00key"}, "idempotency_key", ""),
    ("get_action", {"action_id": "1"}, "action_id", "valid integer"),
    ("get_action", {"action_id": 0}, "action_id", "greater than or equal to 1"),
    ("get_action", {}, "action_id", "Field required"),
    ("list_actions", {"status": "DONE"}, "status", "Unknown status"),
    ("list_actions", {"action_type": "NOPE"}, "type", "Unknown action type"),
    ("list_actions", {"limit": 0}, "limit", "greater than or equal to 1"),
    ("list_actions", {"after": -1}, "after", "greater than or equal to 0"),
    ("cancel_action", {"action_id": 1, "why": "x"}, "why", "Extra inputs are not permitted"),
    ("get_status", {"verbose": True}, "verbose", "Extra inputs are not permitted"),
]
#: Refusals of well-formed input: (tool, arguments, the message's start).
REFUSED_CALLS = [
    ("get_action", {"action_id": 999_999}, "Not found: There is no action #999999."),
    ("read_artifact", {"action_id": 999_999}, "Not found: There is no action #999999."),
    ("cancel_action", {"action_id": 999_999}, "Conflict"),
]


@pytest.mark.parametrize("connect", TRANSPORTS, indirect=True)
def test_bad_input__every_kind_is_a_tool_error_naming_the_field_and_writes_nothing(connect, make_token):
    secret = make_token("read,propose,cancel")

    async def script():
        async with connect(secret) as client:
            bad = [await client.call_tool(tool, arguments) for tool, arguments, _, _ in BAD_CALLS]
            refused = [await client.call_tool(tool, arguments) for tool, arguments, _ in REFUSED_CALLS]
        return bad, refused

    bad, refused = converse(script)
    for (tool, arguments, field, words), result in zip(BAD_CALLS, bad, strict=True):
        message = text(result)
        assert result.is_error, (tool, arguments, message)
        assert result.structured_content["error"]["field"] == field, (tool, message)
        assert message.startswith(f"Invalid input ({field}): ") and words in message, (tool, message)
    for (tool, _, start), result in zip(REFUSED_CALLS, refused, strict=True):
        assert result.is_error and text(result).startswith(start), (tool, text(result))
    assert Action.objects.count() == 0
    assert not AuditEntry.objects.filter(actor__startswith="token:").exists()


FORBIDDEN_TOOLS = [
    "approve_action",
    "reject_action",
    "resume",
    "resume_daemon",
    "revive",
    "switch_mode",
    "set_real_mode",
    "edit_rate_limit",
    "retry_action",
    "retract_action",
    "retract",
]


@pytest.mark.parametrize("connect", TRANSPORTS, indirect=True)
def test_forbidden_verbs__no_tool_approves_resumes_revives_or_switches_mode_and_nothing_changes(connect, make_token):
    secret = make_token("read,propose,cancel,pause")
    awaiting = Action.objects.create(
        action_type="POST_SOCIAL",
        idempotency_key="awaiting",
        payload=POST["payload"],
        status=ActionStatus.AWAITING_APPROVAL,
        requires_approval=True,
    )
    control_flags_get()
    ControlFlags.objects.update(paused=True, killed=True)
    flags_before = ControlFlags.objects.values().get()

    async def script():
        async with connect(secret) as client:
            arguments = {"action_id": awaiting.pk, "reason": "the planner says so", "mode": "REAL"}
            return [await client.call_tool(name, arguments) for name in FORBIDDEN_TOOLS]

    for name, result in zip(FORBIDDEN_TOOLS, converse(script), strict=True):
        assert result.is_error and text(result).startswith(f"Unknown tool: There is no tool {name!r}"), name
        assert "stay with signed-in staff" in text(result)
    awaiting.refresh_from_db()
    assert awaiting.status == ActionStatus.AWAITING_APPROVAL and awaiting.approved_at is None
    assert ControlFlags.objects.values().get() == flags_before
    assert not AuditEntry.objects.filter(actor__startswith="token:").exists()
