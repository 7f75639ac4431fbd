"""What the AI planner may do, through the HTTP API (``orchestration/api``) and the MCP server alike.

The planner proposes, follows, reads and cancels; it may stop the daemon (pause, kill) but never
start it again, approve, reject or switch to REAL: there is no function here that does, and every
function takes the calling ``ApiToken`` and checks its scope first. Writes go through the same
services as the console and ``aol_enqueue`` (``action_enqueue_by_operator``, ``action_cancel``, the
verb table), audited with the token as actor (``token:<name>``).

REAL effects of proposed actions still wait for a person: the approval gate
(AOL_APPROVAL_REQUIRED_TYPES, or ``requires_approval``) holds them as AWAITING_APPROVAL after their
PROOF run, and only signed-in staff with ``approve_action`` can release them.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from orchestration.adapters import adapters_all
from orchestration.adapters.artifacts import sha256_bytes
from orchestration.adapters.store import artifact_read, content_type_for, ref_in_database
from orchestration.exceptions import IdempotencyConflict, InvalidAction
from orchestration.models import Action, ActionStatus, ApiToken, Artifact, ExecutionLog, LogLevel, TokenScope
from orchestration.services.enqueue import (
    EnqueueManyReport,
    action_enqueue_by_operator,
    action_enqueue_many_by_operator,
)
from orchestration.services.operator import BulkReport, action_cancel
from orchestration.services.status import status_snapshot
from orchestration.services.tokens import token_require_scope
from orchestration.services.verbs import VERBS, OperatorResult, operator_run

#: The most actions one batch proposal may hold (validated all-or-nothing, one transaction).
MAX_BATCH_ACTIONS = 1000
#: Page sizes of ``planner_actions_list``.
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 500
#: The error and warning log lines ``action_public`` includes, newest first.
MAX_ERRORS_SHOWN = 20
#: The verbs a token with the ``pause`` scope may run: stopping only.
STOP_VERBS = ("pause", "kill")
DEFAULT_REASON = "proposed by the planner"


def _reason(reason: str | None, default: str) -> str:
    return (reason or "").strip() or default


# --- Propose ----------------------------------------------------------------------------------------


def planner_propose(
    *,
    token: ApiToken,
    action_type: str,
    payload: Any,
    idempotency_key: str | None = None,
    not_before: datetime | None = None,
    priority: int = 0,
    requires_approval: bool = False,
    reason: str | None = None,
) -> tuple[Action, bool]:
    """Queue one action for ``token`` (scope ``propose``); ``(action, created)`` as ``action_enqueue``.

    Raises TokenScopeMissing, InvalidAction (``field`` names the input; IdempotencyConflict for a
    key held by another payload); nothing is written then.
    """
    token_require_scope(token=token, scope=TokenScope.PROPOSE)
    return action_enqueue_by_operator(
        action_type=action_type,
        payload=payload,
        idempotency_key=idempotency_key,
        not_before=not_before,
        priority=priority,
        requires_approval=requires_approval,
        actor=token.actor,
        reason=_reason(reason, DEFAULT_REASON),
    )


def planner_propose_many(
    *, token: ApiToken, items: list[dict[str, Any]], reason: str | None = None
) -> EnqueueManyReport:
    """Queue up to MAX_BATCH_ACTIONS actions in one transaction, all or nothing.

    Every item is validated first; an invalid item, or a key another action holds with other
    contents, raises InvalidAction naming the item(s), and nothing is written.
    """
    token_require_scope(token=token, scope=TokenScope.PROPOSE)
    if not isinstance(items, list) or not items:
        raise InvalidAction("Send a non-empty list of actions.", field="actions")
    if len(items) > MAX_BATCH_ACTIONS:
        raise InvalidAction(
            f"A batch holds at most {MAX_BATCH_ACTIONS} actions, got {len(items)}; split it.", field="actions"
        )
    with transaction.atomic():
        report = action_enqueue_many_by_operator(
            items=items, actor=token.actor, reason=_reason(reason, DEFAULT_REASON), source="planner batch"
        )
        if report.conflicts:
            first = report.conflicts[0]
            # Raised inside the transaction: the items already inserted are rolled back with it.
            raise IdempotencyConflict(
                f"idempotency key {first.idempotency_key!r} is already used by action #{first.action_id} with "
                "a different payload; nothing in this batch was written.",
                items=tuple(conflict.item for conflict in report.conflicts),
                idempotency_key=first.idempotency_key,
            )
    return report


# --- Read -------------------------------------------------------------------------------------------


def _approval_state(action: Action) -> str:
    if action.status == ActionStatus.REJECTED:
        return "rejected"
    if action.approved_at is not None:
        return "approved"
    if action.status == ActionStatus.AWAITING_APPROVAL:
        return "awaiting"
    return "required" if action.requires_approval else "not required"


def _latest_artifact(action_id: int) -> ExecutionLog | None:
    return (
        ExecutionLog.objects.filter(action_id=action_id)
        .exclude(artifact_ref="")
        .only("artifact_ref", "artifact_sha256", "ts")
        .order_by("-id")
        .first()
    )


def action_public(*, action: Action, detail: bool = True) -> dict[str, Any]:
    """What the planner sees of an action (JSON-ready); ``detail`` adds recent errors and the artifact."""
    data: dict[str, Any] = {
        "id": action.pk,
        "action_type": action.action_type,
        "idempotency_key": action.idempotency_key,
        "status": action.status,
        "attempts": action.attempts,
        "priority": action.priority,
        "not_before": action.not_before.isoformat() if action.not_before else None,
        "created_at": action.created_at.isoformat() if action.created_at else None,
        "updated_at": action.updated_at.isoformat() if action.updated_at else None,
        "last_error": action.last_error,
        "approval": {
            "state": _approval_state(action),
            "requires_approval": action.requires_approval,
            "sha256": action.approval_sha256 or None,
            "approved_by": action.approved_by or None,
            "approved_at": action.approved_at.isoformat() if action.approved_at else None,
        },
        # What a REAL success made in the world, where the adapter said.
        "remote": (
            {"id": action.remote_id or None, "url": action.remote_url or None}
            if action.remote_id or action.remote_url
            else None
        ),
    }
    if detail:
        data["payload"] = action.payload
        errors = (
            ExecutionLog.objects.filter(action_id=action.pk, level__in=[LogLevel.WARNING, LogLevel.ERROR])
            .order_by("-id")
            .values("ts", "level", "message")[:MAX_ERRORS_SHOWN]
        )
        data["errors"] = [
            {"ts": row["ts"].isoformat(), "level": row["level"], "message": row["message"]} for row in errors
        ]
        latest = _latest_artifact(action.pk)
        data["artifact"] = (
            {"sha256": latest.artifact_sha256, "created_at": latest.ts.isoformat()} if latest is not None else None
        )
    return data


def planner_action_get(*, token: ApiToken, action_id: int) -> Action | None:
    """The action ``action_id`` (scope ``read``), or None."""
    token_require_scope(token=token, scope=TokenScope.READ)
    return Action.objects.filter(pk=action_id).first()


@dataclass(frozen=True)
class ActionsPage:
    actions: list[Action]
    next_after: int | None  # pass as ``after`` for the next page; None on the last page


def actions_filter_clean(*, status: str | None, action_type: str | None, after: Any, limit: Any) -> dict[str, Any]:
    """The list filters, checked; InvalidAction (``field`` names the input) if not."""
    if status and status not in ActionStatus.values:
        raise InvalidAction(f"Unknown status {status!r}; one of {', '.join(ActionStatus.values)}.", field="status")
    if action_type and action_type not in adapters_all():
        raise InvalidAction(
            f"Unknown action type {action_type!r}; one of {', '.join(sorted(adapters_all()))}.", field="type"
        )
    if after is None or after == "":
        after = 0
    try:
        after = int(after)
    except (TypeError, ValueError):
        raise InvalidAction(f"after must be an action id (a whole number), got {after!r}.", field="after") from None
    if after < 0:
        raise InvalidAction(f"after must not be negative, got {after}.", field="after")
    if limit is None or limit == "":
        limit = DEFAULT_PAGE_SIZE
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise InvalidAction(f"limit must be a whole number, got {limit!r}.", field="limit") from None
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidAction(f"limit must be from 1 to {MAX_PAGE_SIZE}, got {limit}.", field="limit")
    return {"status": status or None, "action_type": action_type or None, "after": after, "limit": limit}


def planner_actions_list(
    *,
    token: ApiToken,
    status: str | None = None,
    action_type: str | None = None,
    after: Any = None,
    limit: Any = None,
) -> ActionsPage:
    """Actions with an id above ``after``, oldest first, filtered (scope ``read``): keyset pages, no COUNT."""
    token_require_scope(token=token, scope=TokenScope.READ)
    clean = actions_filter_clean(status=status, action_type=action_type, after=after, limit=limit)
    rows = Action.objects.filter(pk__gt=clean["after"])
    if clean["status"]:
        rows = rows.filter(status=clean["status"])
    if clean["action_type"]:
        rows = rows.filter(action_type=clean["action_type"])
    page = list(rows.order_by("pk")[: clean["limit"] + 1])
    more = len(page) > clean["limit"]
    page = page[: clean["limit"]]
    return ActionsPage(actions=page, next_after=page[-1].pk if more else None)


@dataclass(frozen=True)
class ArtifactContent:
    action_id: int
    content: bytes
    sha256: str  # as recorded when it was written
    intact: bool  # the content still hashes to ``sha256``
    ref: str = ""  # where it is stored: a path under AOL_ARTIFACTS_DIR, or db:sha256:<hex>
    content_type: str = "text/plain"


def planner_artifact_read(*, token: ApiToken, action_id: int) -> ArtifactContent | None:
    """The latest PROOF artifact of ``action_id`` (scope ``read``), from whichever store holds it; None
    when it has none.

    ArtifactNotFound when the recorded artifact cannot be read (pruned, or its store unavailable).
    """
    token_require_scope(token=token, scope=TokenScope.READ)
    latest = _latest_artifact(action_id)
    if latest is None:
        return None
    content = artifact_read(ref=latest.artifact_ref)
    if ref_in_database(latest.artifact_ref):
        stored = Artifact.objects.filter(sha256=latest.artifact_sha256).values_list("content_type", flat=True)
        content_type = stored.first() or "text/plain"
    else:
        content_type = content_type_for(latest.artifact_ref)
    return ArtifactContent(
        action_id=action_id,
        content=content,
        sha256=latest.artifact_sha256,
        intact=sha256_bytes(content) == latest.artifact_sha256,
        ref=latest.artifact_ref,
        content_type=content_type,
    )


def planner_status(*, token: ApiToken) -> dict[str, Any]:
    """The same snapshot as the console's status JSON (scope ``read``)."""
    token_require_scope(token=token, scope=TokenScope.READ)
    return status_snapshot()


# --- Cancel and stop --------------------------------------------------------------------------------


def planner_cancel(*, token: ApiToken, action_id: int, reason: str | None = None) -> BulkReport:
    """Cancel one action (scope ``cancel``) as the console does; NoEligibleActions when it cannot be."""
    token_require_scope(token=token, scope=TokenScope.CANCEL)
    return action_cancel(action_ids=[action_id], actor=token.actor, reason=_reason(reason, "cancelled by the planner"))


def planner_stop(*, token: ApiToken, verb: str, reason: str | None = None) -> OperatorResult:
    """Pause or kill the daemon (scope ``pause``). Resuming and reviving stay with people."""
    token_require_scope(token=token, scope=TokenScope.PAUSE)
    if verb not in STOP_VERBS:
        raise InvalidAction(
            f"A token can only stop the daemon ({' or '.join(STOP_VERBS)}); {verb!r} stays with people.",
            field="verb",
        )
    return operator_run(verb=VERBS[verb], actor=token.actor, reason=_reason(reason, f"{verb} requested by the planner"))
