"""The six MCP tools: thin, synchronous wrappers over ``services/planner.py``.

Each tool parses its arguments with a pydantic model (``ActionProposal`` for ``propose_action``, the
same model the HTTP API validates with) and calls one ``planner_*`` function, which checks the
token's scope and does the work through the same services as the console and the CLI. Every refusal
comes back as a tool error (``isError``) whose text says what was wrong and, for bad input, which
field; nothing is written then. There is deliberately no tool that approves, rejects, resumes,
revives, switches PROOF/REAL or edits rate limits: those stay with signed-in staff.

The functions here touch the database: the server (``orchestration/mcp/server.py``) calls
``tool_call`` on a worker thread, never on the event loop.
"""

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from django.core.serializers.json import DjangoJSONEncoder
from mcp import types
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from orchestration.api.schemas import REAL_NOTE, ActionProposal
from orchestration.exceptions import (
    ArtifactNotFound,
    ControlChangeRejected,
    IdempotencyConflict,
    InvalidAction,
    TokenRefused,
    TokenScopeMissing,
)
from orchestration.models import ActionStatus, ApiToken, TokenScope
from orchestration.services import planner

logger = logging.getLogger("orchestration")

PEOPLE_ONLY = "No tool approves, rejects, resumes, revives or switches PROOF/REAL: those stay with signed-in staff."


# --- Inputs other than a proposal ---------------------------------------------------------------------


class ActionRef(BaseModel):
    """One action, by id."""

    model_config = ConfigDict(extra="forbid")

    action_id: Annotated[StrictInt, Field(ge=1, description="The action's id, as propose_action returned it")]


class CancelRequest(ActionRef):
    """One action to cancel, and why."""

    reason: Annotated[
        StrictStr | None, Field(default=None, max_length=500, description="Why; kept in the audit trail")
    ] = None


class ListRequest(BaseModel):
    """Filters and the page of ``list_actions``."""

    model_config = ConfigDict(extra="forbid")

    status: Annotated[
        StrictStr | None, Field(default=None, description="Only actions in this status: " + ", ".join(ActionStatus))
    ] = None
    action_type: Annotated[StrictStr | None, Field(default=None, description="Only actions of this type")] = None
    after: Annotated[
        StrictInt | None,
        Field(default=None, ge=0, description="Only actions with a higher id: the next_after of the previous page"),
    ] = None
    limit: Annotated[
        StrictInt | None,
        Field(
            default=None,
            ge=1,
            le=planner.MAX_PAGE_SIZE,
            description=f"Page size (default {planner.DEFAULT_PAGE_SIZE})",
        ),
    ] = None


class NoInput(BaseModel):
    """A tool without arguments."""

    model_config = ConfigDict(extra="forbid")


# --- The tools -----------------------------------------------------------------------------------------


class ToolRefused(Exception):
    """A tool's own refusal (not found, nothing to read), with the title of its tool error."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(detail)
        self.title = title
        self.detail = detail


def _action_or_refuse(*, token: ApiToken, action_id: int) -> Any:
    action = planner.planner_action_get(token=token, action_id=action_id)
    if action is None:
        raise ToolRefused("Not found", f"There is no action #{action_id}.")
    return action


def _propose(token: ApiToken, proposal: ActionProposal) -> dict[str, Any]:
    action, created = planner.planner_propose(token=token, **proposal.service_fields())
    return {"created": created, "action": planner.action_public(action=action, detail=False)}


def _get(token: ApiToken, ref: ActionRef) -> dict[str, Any]:
    return planner.action_public(action=_action_or_refuse(token=token, action_id=ref.action_id))


def _list(token: ApiToken, request: ListRequest) -> dict[str, Any]:
    page = planner.planner_actions_list(
        token=token, status=request.status, action_type=request.action_type, after=request.after, limit=request.limit
    )
    return {
        "actions": [planner.action_public(action=action, detail=False) for action in page.actions],
        "next_after": page.next_after,
    }


def _cancel(token: ApiToken, request: CancelRequest) -> dict[str, Any]:
    report = planner.planner_cancel(token=token, action_id=request.action_id, reason=request.reason)
    # The action as it is now only for a token that may read it: the cancel is done either way.
    readable = report.changed and TokenScope.READ in token.scopes
    action = _action_or_refuse(token=token, action_id=request.action_id) if readable else None
    return {
        "summary": report.summary(),
        "cancelled": report.cancelled,
        "stop_requested": report.stop_requested,
        "action": planner.action_public(action=action, detail=False) if action is not None else None,
    }


def _status(token: ApiToken, _: NoInput) -> dict[str, Any]:
    return planner.planner_status(token=token)


def _read_artifact(token: ApiToken, ref: ActionRef) -> dict[str, Any]:
    action = _action_or_refuse(token=token, action_id=ref.action_id)
    try:
        artifact = planner.planner_artifact_read(token=token, action_id=ref.action_id)
    except ArtifactNotFound:
        logger.exception("MCP read_artifact: artifact of action id=%s unreadable", ref.action_id)
        raise ToolRefused(
            "Artifact unavailable",
            f"The artifact of action #{ref.action_id} is recorded but cannot be read (pruned, or its store is "
            "unavailable).",
        ) from None
    if artifact is None:
        raise ToolRefused(
            "Not found", f"Action #{ref.action_id} has no artifact yet (it is {action.status}); try again after it ran."
        )
    try:
        content, encoding = artifact.content.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(artifact.content).decode("ascii"), "base64"
    return {
        "action_id": artifact.action_id,
        "sha256": artifact.sha256,
        "intact": artifact.intact,
        "encoding": encoding,
        "content": content,
    }


@dataclass(frozen=True)
class Tool:
    name: str
    title: str
    description: str
    input_model: type[BaseModel]
    run: Callable[[ApiToken, Any], dict[str, Any]]
    annotations: types.ToolAnnotations

    def definition(self) -> types.Tool:
        """What ``tools/list`` shows: the input schema is the pydantic model's, as the API's OpenAPI has it."""
        return types.Tool(
            name=self.name,
            title=self.title,
            description=f"{self.description}\n\n{REAL_NOTE} {PEOPLE_ONLY}",
            input_schema=self.input_model.model_json_schema(),
            annotations=self.annotations,
        )


def _hints(*, read_only: bool, destructive: bool = False, idempotent: bool = True) -> types.ToolAnnotations:
    return types.ToolAnnotations(
        read_only_hint=read_only, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=False
    )


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "propose_action",
            "Propose an action",
            "Queue one action (scope: propose). Returns it and whether it was created: the same idempotency_key "
            "with the same contents returns the existing action, with other contents it is refused. Follow it "
            "with get_action; read its PROOF content with read_artifact.",
            ActionProposal,
            _propose,
            _hints(read_only=False, idempotent=False),  # idempotent only with an idempotency_key
        ),
        Tool(
            "get_action",
            "Get an action",
            "One action (scope: read): status, attempts, recent errors, approval state, payload and the SHA-256 "
            "of its latest artifact.",
            ActionRef,
            _get,
            _hints(read_only=True),
        ),
        Tool(
            "list_actions",
            "List actions",
            "Actions oldest first (scope: read), optionally only one status or type, one page at a time: pass the "
            "answer's next_after as after for the next page (null on the last page).",
            ListRequest,
            _list,
            _hints(read_only=True),
        ),
        Tool(
            "cancel_action",
            "Cancel an action",
            "Cancel an action that has not finished (scope: cancel): a waiting one becomes CANCELLED, a running "
            "one is asked to stop. Cancelled actions are kept, never deleted; a finished one cannot be cancelled.",
            CancelRequest,
            _cancel,
            _hints(read_only=False, destructive=True, idempotent=False),
        ),
        Tool(
            "get_status",
            "AOL status",
            "The AOL's state (scope: read): PROOF or REAL mode, the paused and killed switches, whether a daemon "
            "holds the lease, the last tick and the number of actions per status.",
            NoInput,
            _status,
            _hints(read_only=True),
        ),
        Tool(
            "read_artifact",
            "Read an action's artifact",
            "The latest PROOF artifact of an action (scope: read): the exact content its adapter rendered (the "
            "post or the e-mail), the SHA-256 recorded when it was written and whether the file still matches it.",
            ActionRef,
            _read_artifact,
            _hints(read_only=True),
        ),
    )
}


# --- Calling a tool ------------------------------------------------------------------------------------


def tools_list() -> list[types.Tool]:
    return [tool.definition() for tool in TOOLS.values()]


def _json_ready(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    text = json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)
    return text, json.loads(text)


def tool_error(title: str, detail: str, *, field: str | None = None) -> types.CallToolResult:
    """A tool error: the text says what was wrong (and which field), ``structuredContent.error`` the same."""
    where = f" ({field})" if field else ""
    return types.CallToolResult(
        content=[types.TextContent(text=f"{title}{where}: {detail}")],
        structured_content={"error": {"title": title, "field": field, "detail": detail}},
        is_error=True,
    )


def _validation_error(exc: ValidationError) -> types.CallToolResult:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        problems.append(f"{where}: {error['msg']}")
    first = exc.errors(include_url=False, include_input=False)[0]["loc"]
    return tool_error("Invalid input", "; ".join(problems) + ".", field=str(first[0]) if first else None)


def tool_call(
    *, name: str, arguments: dict[str, Any] | None, authenticate: Callable[[], ApiToken]
) -> types.CallToolResult:
    """Run the tool ``name`` with the token ``authenticate()`` returns; every refusal is a tool error."""
    tool = TOOLS.get(name)
    if tool is None:
        return tool_error(
            "Unknown tool",
            f"There is no tool {name!r}; the tools are {', '.join(TOOLS)}. {PEOPLE_ONLY}",
        )
    try:
        token = authenticate()
        params = tool.input_model.model_validate(arguments or {})
        data = tool.run(token, params)
    except TokenRefused as exc:
        return tool_error("Token refused", str(exc))
    except TokenScopeMissing as exc:
        return tool_error("Scope missing", str(exc))
    except ValidationError as exc:
        return _validation_error(exc)
    except IdempotencyConflict as exc:
        return tool_error("Conflict", str(exc), field=exc.field)
    except InvalidAction as exc:
        return tool_error("Invalid input", str(exc), field=exc.field)
    except ControlChangeRejected as exc:
        return tool_error("Conflict", str(exc))
    except ToolRefused as exc:
        return tool_error(exc.title, exc.detail)
    text, structured = _json_ready(data)
    logger.info("MCP tool called tool=%s token=%s", name, token.name)
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured)
