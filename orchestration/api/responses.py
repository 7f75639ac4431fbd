"""The shapes the HTTP API answers with, for its OpenAPI schema (the values come from ``action_public``)."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from orchestration.api.schemas import ActionProposal
from orchestration.services.planner import MAX_BATCH_ACTIONS


class Approval(BaseModel):
    state: str = Field(description="not required, required, awaiting, approved or rejected")
    requires_approval: bool
    sha256: str | None = Field(description="SHA-256 of the PROOF artifact a person approved or rejected")
    approved_by: str | None
    approved_at: str | None


class Remote(BaseModel):
    id: str | None = Field(description="The remote side's id of what the REAL run made (post id, Message-ID, event id)")
    url: str | None = Field(description="Where it can be seen, when the remote side gives a URL")


class ErrorLine(BaseModel):
    ts: str
    level: str
    message: str


class ArtifactInfo(BaseModel):
    sha256: str
    created_at: str


class ActionOut(BaseModel):
    """An action as the planner sees it; ``payload``, ``errors``, ``artifact`` and ``artifact_url`` in detail only."""

    id: int
    action_type: str
    idempotency_key: str
    status: str
    attempts: int
    priority: int
    not_before: str | None
    created_at: str | None
    updated_at: str | None
    last_error: str
    approval: Approval
    remote: Remote | None = Field(default=None, description="What a REAL success made in the world; null if nothing")
    url: str = Field(description="This action in the API")
    payload: dict[str, Any] | None = None
    errors: list[ErrorLine] | None = Field(default=None, description="Recent warnings and errors, newest first")
    artifact: ArtifactInfo | None = Field(default=None, description="The latest PROOF artifact, if any")
    artifact_url: str | None = Field(default=None, description="Where to read the latest PROOF artifact")


class ActionsPage(BaseModel):
    actions: list[ActionOut]
    next_after: int | None = Field(description="Pass as ``after`` for the next page; null on the last page")
    next: str | None = Field(description="The next page's URL; null on the last page")


class BatchProposal(BaseModel):
    """Up to 1,000 actions, validated all or nothing and written in one transaction."""

    model_config = ConfigDict(extra="forbid")

    actions: Annotated[list[ActionProposal], Field(min_length=1, max_length=MAX_BATCH_ACTIONS)]
    reason: Annotated[
        StrictStr | None, Field(default=None, max_length=500, description="Why; kept in the audit trail")
    ] = None


class BatchResult(BaseModel):
    created: list[int] = Field(description="Ids of the new actions, in input order")
    existing: list[int] = Field(description="Ids of actions that already had the key with the same contents")


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[
        StrictStr | None, Field(default=None, max_length=500, description="Why; kept in the audit trail")
    ] = None


class CancelResult(BaseModel):
    changed: bool
    stop_requested: bool = Field(description="The action was RUNNING: its daemon was asked to stop it")
    action: ActionOut


class StopResult(BaseModel):
    verb: str
    changed: bool
    message: str


class Problem(BaseModel):
    """An error (RFC 9457), sent as application/problem+json."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = Field(default=None, description="The input the error is about")
    items: list[int] | None = Field(default=None, description="1-based positions in a batch")
    errors: list[dict[str, str]] | None = Field(default=None, description="The validation errors found (at most 50)")
    error_count: int | None = Field(default=None, description="How many validation errors there were")
