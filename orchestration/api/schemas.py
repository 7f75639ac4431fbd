"""The shapes of what the planner sends, shared by the HTTP API and the MCP server.

These models check only shapes (types, lengths, ranges): the meaning (a known action type, a payload
its adapter accepts, a key's format, a not_before with a time zone) is checked by
``action_fields_clean`` behind ``planner_propose``, the one validation of every way in. Strict types:
``"5"`` is not a priority and ``"true"`` is not a boolean.
"""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from orchestration.models import MAX_PRIORITY, MIN_PRIORITY

REAL_NOTE = (
    "A proposal never acts on the world by itself: in REAL mode, actions whose type is gated "
    "(AOL_APPROVAL_REQUIRED_TYPES, by default POST_SOCIAL and SEND_EMAIL) or that set requires_approval "
    "first run in PROOF and wait for a person to approve the exact artifact."
)


class ActionProposal(BaseModel):
    """One action the planner proposes."""

    model_config = ConfigDict(extra="forbid")

    action_type: Annotated[StrictStr, Field(max_length=64, description="An action type, e.g. POST_SOCIAL")]
    payload: Annotated[dict[str, Any], Field(description="The action's input; its adapter validates it")]
    idempotency_key: Annotated[
        StrictStr | None,
        Field(
            default=None,
            max_length=255,
            description="The same key with the same payload returns the same action; omitted: a new random key",
        ),
    ] = None
    not_before: Annotated[
        datetime | None, Field(default=None, description="Not run before this time (ISO 8601 with a time zone)")
    ] = None
    priority: Annotated[
        StrictInt, Field(default=0, ge=MIN_PRIORITY, le=MAX_PRIORITY, description="Higher runs first")
    ] = 0
    requires_approval: Annotated[
        StrictBool, Field(default=False, description="Gate this action's REAL run behind a person's approval")
    ] = False
    reason: Annotated[
        StrictStr | None, Field(default=None, max_length=500, description="Why; kept in the audit trail")
    ] = None

    def service_fields(self) -> dict[str, Any]:
        """The keyword arguments of ``planner_propose`` (without the token)."""
        return self.model_dump()
