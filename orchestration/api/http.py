"""The planner's HTTP API under /api/v1/ (django-ninja): authenticate, parse, call services/planner.py, render.

Thin on purpose: every rule lives in ``services/planner.py`` and the services behind it, which the
MCP server calls too. This module adds only what is HTTP's: Bearer tokens (and staff sessions on
the read routes), the body size limit, the per-token write rate limit, status codes, problem+json
errors and the OpenAPI schema. There is no route that approves, rejects, resumes, revives or
switches to REAL: those stay with signed-in staff in the console.
"""

import logging
import re
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Header, NinjaAPI, Query, Status, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.responses import codes_4xx
from ninja.security import APIKeyCookie, HttpBearer

from orchestration.api.problems import PROBLEM_CONTENT_TYPE, problem_response
from orchestration.api.responses import (
    ActionOut,
    ActionsPage,
    BatchProposal,
    BatchResult,
    CancelResult,
    Problem,
    ReasonIn,
    StopResult,
)
from orchestration.api.schemas import REAL_NOTE, ActionProposal
from orchestration.conf import aol
from orchestration.exceptions import (
    ArtifactNotFound,
    ControlChangeRejected,
    IdempotencyConflict,
    InvalidAction,
    TokenRateLimited,
    TokenRefused,
    TokenScopeMissing,
)
from orchestration.models import Action, ApiToken, TokenScope
from orchestration.services.planner import (
    MAX_PAGE_SIZE,
    action_public,
    planner_action_get,
    planner_actions_list,
    planner_artifact_read,
    planner_cancel,
    planner_propose,
    planner_propose_many,
    planner_status,
    planner_stop,
)
from orchestration.services.tokens import token_authenticate, token_require_scope, token_write_admit

logger = logging.getLogger("orchestration")

#: Room in a single proposal's body for everything around the payload (key, reason, not_before…).
ENVELOPE_BYTES = 16 * 1024
#: The body of a cancel, pause or kill (an optional reason).
SMALL_BODY_BYTES = 16 * 1024
#: Validation errors listed in one problem; the count says how many more there were.
MAX_ERRORS_LISTED = 50


class BodyTooLarge(Exception):
    def __init__(self, *, size: int, limit: int, what: str) -> None:
        self.size, self.limit, self.what = size, limit, what
        super().__init__(f"{what} is {size} bytes; the limit is {limit}.")


def single_body_limit() -> int:
    return aol.max_payload_bytes + ENVELOPE_BYTES


def batch_body_limit() -> int:
    # Django refuses to read a larger body at all (RequestDataTooBig); say so here, as a 413.
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440


def small_body_limit() -> int:
    return SMALL_BODY_BYTES


# --- Authentication ----------------------------------------------------------------------------------


class TokenAuth(HttpBearer):
    """``Authorization: Bearer aol_…``: the token, if it is live and has ``scope``."""

    def __init__(self, *, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        api_token = token_authenticate(secret=token)  # TokenRefused says why, never echoing the secret
        token_require_scope(token=api_token, scope=self.scope)
        return api_token


class TokenWriteAuth(TokenAuth):
    """A write: the token as TokenAuth, then its rate limit, then the body's size (before it is parsed)."""

    def __init__(self, *, scope: str, body_limit: Any, what: str) -> None:
        super().__init__(scope=scope)
        self.body_limit = body_limit
        self.what = what

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        api_token = super().authenticate(request, token)
        token_write_admit(token=api_token)
        try:
            size = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = 0
        limit = self.body_limit()
        if size > limit:
            raise BodyTooLarge(size=size, limit=limit, what=self.what)
        return api_token


class StaffSession(APIKeyCookie):
    """A signed-in, active staff user may read (never write: writes take tokens only, so no CSRF hole)."""

    param_name = settings.SESSION_COOKIE_NAME

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiToken | None:
        user = request.user
        if user.is_authenticated and user.is_active and user.is_staff:
            # Never saved: it only carries the read scope into the planner's read functions.
            return ApiToken(name=f"session:{user.get_username()}", scopes=[TokenScope.READ])
        return None


READERS = [TokenAuth(scope=TokenScope.READ), StaffSession()]


class PlannerAPI(NinjaAPI):
    """NinjaAPI whose schema says what the answers are: errors as application/problem+json (RFC 9457)."""

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
        for methods in schema.get("paths", {}).values():
            for operation in methods.values():
                for code, answer in operation.get("responses", {}).items():
                    content = answer.get("content", {})
                    if str(code)[:1] in "45" and "application/json" in content:
                        answer["content"] = {PROBLEM_CONTENT_TYPE: content["application/json"]}
        return schema


api = PlannerAPI(
    title="AICMO AOL planner API",
    version="1",
    description=(
        "Propose, follow, read and cancel actions of the Autonomy Orchestration Layer. " + REAL_NOTE + " No route "
        "approves, rejects, resumes, revives or switches to REAL: those stay with people in the console. "
        "Errors are application/problem+json (RFC 9457). See docs/api.md."
    ),
    urls_namespace="api_v1",
    docs=Swagger(settings={"validatorUrl": None, "tryItOutEnabled": False}),
    docs_url="/docs",
    openapi_url="/openapi.json",
)


# --- Errors as problem+json --------------------------------------------------------------------------


def _invalid_action(request: HttpRequest, exc: InvalidAction) -> HttpResponse:
    conflict = isinstance(exc, IdempotencyConflict)
    return problem_response(
        request,
        status=409 if conflict else 422,
        kind="idempotency-conflict" if conflict else "invalid-action",
        title="Idempotency key in use" if conflict else "Invalid action",
        detail=exc.located("Item"),
        field=exc.field,
        items=list(exc.items),
    )


def _token_refused(request: HttpRequest, exc: TokenRefused) -> HttpResponse:
    return problem_response(
        request,
        status=401,
        kind="token-refused",
        title="API token refused",
        detail=str(exc),
        headers={"WWW-Authenticate": 'Bearer realm="aol"'},
    )


def _scope_missing(request: HttpRequest, exc: TokenScopeMissing) -> HttpResponse:
    return problem_response(request, status=403, kind="scope-missing", title="Scope missing", detail=str(exc))


def _rate_limited(request: HttpRequest, exc: TokenRateLimited) -> HttpResponse:
    return problem_response(
        request,
        status=429,
        kind="rate-limited",
        title="Too many write requests",
        detail=str(exc),
        headers={"Retry-After": str(exc.retry_after_seconds)},
    )


def _rejected(request: HttpRequest, exc: ControlChangeRejected) -> HttpResponse:
    return problem_response(request, status=409, kind="not-possible", title="Not possible now", detail=str(exc))


def _too_large(request: HttpRequest, exc: BodyTooLarge) -> HttpResponse:
    return problem_response(
        request, status=413, kind="too-large", title="Request too large", detail=f"{exc} Nothing was written."
    )


def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return problem_response(request, status=404, detail=str(exc) or "There is no such resource.")


def _location(loc: tuple[Any, ...] | list[Any]) -> tuple[list[Any], str]:
    """A pydantic error location without its source and body parameter name, and as text."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[2:]  # ("body", "<parameter>", …)
    elif parts:
        parts = parts[1:]  # ("query" | "header" | "path", name)
    return parts, ".".join(str(part) for part in parts)


def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = []
    fields: list[str] = []
    items: list[int] = []
    for error in exc.errors:
        parts, where = _location(error.get("loc", ()))
        message = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            message = "unknown field (not in the schema)"
        elif error.get("type") == "missing" and not parts:
            message = "send a JSON object as the body (Content-Type: application/json)"
        errors.append({"location": where or "body", "detail": message})
        if parts and parts[0] == "actions" and len(parts) > 1 and isinstance(parts[1], int):
            items.append(parts[1] + 1)
            parts = parts[2:]
        named = next((part for part in parts if isinstance(part, str)), None)
        if named:
            fields.append(named)
    shown = "; ".join(f"{e['location']}: {e['detail']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return problem_response(
        request,
        status=422,
        kind="invalid-request",
        title="Invalid request",
        detail=f"{shown}{more}. Nothing was written.",
        field=fields[0] if len(set(fields)) == 1 else None,
        items=sorted(set(items)),
        errors=errors[:MAX_ERRORS_LISTED],
        error_count=len(errors),
    )


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc, AuthenticationError):
        return problem_response(
            request,
            status=401,
            kind="token-refused",
            title="Authentication needed",
            detail="Send an API token: Authorization: Bearer aol_… (read routes also take a staff session).",
            headers={"WWW-Authenticate": 'Bearer realm="aol"'},
        )
    if exc.status_code == 400 and "parse" in str(exc).lower():
        return problem_response(
            request,
            status=400,
            kind="malformed-json",
            title="Malformed JSON",
            detail="The body is not valid JSON: send one JSON object (Content-Type: application/json). "
            "Nothing was written.",
        )
    return problem_response(request, status=exc.status_code, detail=str(exc))


for _exception, _handler in (
    (InvalidAction, _invalid_action),
    (TokenRefused, _token_refused),
    (TokenScopeMissing, _scope_missing),
    (TokenRateLimited, _rate_limited),
    (ControlChangeRejected, _rejected),
    (BodyTooLarge, _too_large),
    (Http404, _not_found),
    (ValidationError, _validation_error),
    (HttpError, _http_error),
):
    api.add_exception_handler(_exception, _handler)  # type: ignore[arg-type]


# --- Rendering ---------------------------------------------------------------------------------------


def action_out(action: Action, *, detail: bool) -> dict[str, Any]:
    data = action_public(action=action, detail=detail)
    data["url"] = reverse("api_v1:action_get", kwargs={"action_id": action.pk})
    if detail and data.get("artifact"):
        data["artifact_url"] = reverse("api_v1:action_artifact", kwargs={"action_id": action.pk})
    return data


ERRORS: dict[Any, Any] = {codes_4xx: Problem}
PROPOSE_NOTE = (
    "201 when created, 200 when an action with this idempotency key and the same contents exists, "
    "409 when the key is used with other contents, 413 when the body is too large, 422 when invalid. "
)


# --- Routes ------------------------------------------------------------------------------------------


@api.post(
    "/actions",
    auth=TokenWriteAuth(scope=TokenScope.PROPOSE, body_limit=single_body_limit, what="The proposal"),
    response={200: ActionOut, 201: ActionOut, **ERRORS},
    exclude_unset=True,
    operation_id="proposeAction",
    summary="Propose one action (scope propose)",
    description=PROPOSE_NOTE
    + "The idempotency key goes in the body or in an Idempotency-Key header (both: they must match). "
    + REAL_NOTE,
)
def propose(
    request: HttpRequest,
    proposal: ActionProposal,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
) -> Status[dict[str, Any]]:
    fields = proposal.service_fields()
    if idempotency_key is not None:
        if fields["idempotency_key"] not in (None, idempotency_key):
            raise InvalidAction(
                "The Idempotency-Key header and the body's idempotency_key differ; send one, or the same in both.",
                field="idempotency_key",
            )
        fields["idempotency_key"] = idempotency_key
    action, created = planner_propose(token=request.auth, **fields)  # type: ignore[attr-defined]
    return Status(201 if created else 200, action_out(action, detail=True))


@api.post(
    "/actions/batch",
    auth=TokenWriteAuth(scope=TokenScope.PROPOSE, body_limit=batch_body_limit, what="The batch"),
    response={201: BatchResult, **ERRORS},
    operation_id="proposeActions",
    summary="Propose up to 1,000 actions at once, all or nothing (scope propose)",
    description="Every action is validated first; any invalid one (its position in `items`), or a key used "
    "with other contents (409), and nothing is written. One transaction. " + REAL_NOTE,
)
def propose_batch(request: HttpRequest, batch: BatchProposal) -> Status[dict[str, Any]]:
    with_reason = [number for number, proposal in enumerate(batch.actions, start=1) if proposal.reason is not None]
    if with_reason:
        raise InvalidAction(
            "A batch has one reason, in the batch's own reason field, not one per action.",
            field="reason",
            items=tuple(with_reason),
        )
    items = [proposal.model_dump(exclude={"reason"}) for proposal in batch.actions]
    report = planner_propose_many(token=request.auth, items=items, reason=batch.reason)  # type: ignore[attr-defined]
    return Status(201, {"created": report.created, "existing": report.existing})


@api.get(
    "/actions",
    auth=READERS,
    response={200: ActionsPage, **ERRORS},
    exclude_unset=True,
    operation_id="listActions",
    summary="List actions, oldest first, a page at a time (scope read)",
    description="Keyset pages: pass the answer's `next_after` as `after` (or follow `next`) for the next page. "
    "No total is counted.",
)
def list_actions(
    request: HttpRequest,
    status: str | None = None,
    action_type: str | None = Query(None, alias="type"),
    after: int | None = Query(None, ge=0),
    limit: int | None = Query(None, ge=1, le=MAX_PAGE_SIZE),
) -> dict[str, Any]:
    page = planner_actions_list(
        token=request.auth,  # type: ignore[attr-defined]
        status=status,
        action_type=action_type,
        after=after,
        limit=limit,
    )
    following = None
    if page.next_after is not None:
        query = {"status": status, "type": action_type, "limit": limit, "after": page.next_after}
        following = f"{request.path}?{urlencode({k: v for k, v in query.items() if v not in (None, '')})}"
    return {
        "actions": [action_out(action, detail=False) for action in page.actions],
        "next_after": page.next_after,
        "next": following,
    }


@api.get(
    "/actions/{action_id}",
    auth=READERS,
    response={200: ActionOut, **ERRORS},
    exclude_unset=True,
    url_name="action_get",
    operation_id="getAction",
    summary="One action: status, attempts, errors, approval state, artifact (scope read)",
)
def get_action(request: HttpRequest, action_id: int) -> dict[str, Any]:
    action = planner_action_get(token=request.auth, action_id=action_id)  # type: ignore[attr-defined]
    if action is None:
        raise Http404(f"There is no action #{action_id}.")
    return action_out(action, detail=True)


_TEXTUAL = re.compile(r"^(text/|application/(json|xml))")


@api.get(
    "/actions/{action_id}/artifact",
    auth=READERS,
    response={200: None, **ERRORS},
    url_name="action_artifact",
    operation_id="getArtifact",
    summary="The latest PROOF artifact of an action, as stored (scope read)",
    description="The bytes as the adapter wrote them, with X-Artifact-SHA256: their SHA-256 as recorded "
    "(the one a person approves).",
    openapi_extra={
        "responses": {
            200: {
                "description": "The artifact",
                "headers": {"X-Artifact-SHA256": {"schema": {"type": "string"}}},
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def get_artifact(request: HttpRequest, action_id: int) -> HttpResponse:
    try:
        artifact = planner_artifact_read(token=request.auth, action_id=action_id)  # type: ignore[attr-defined]
    except ArtifactNotFound as exc:
        logger.warning("artifact unreadable action=%s: %s", action_id, exc)
        raise Http404(
            f"Action #{action_id}'s artifact cannot be read (pruned by aol_prune, deleted, or its store is down)."
        ) from None
    if artifact is None:
        raise Http404(f"Action #{action_id} has no PROOF artifact (it does not exist, or has not run).")
    if not artifact.intact:
        logger.error("artifact damaged action=%s ref=%s", action_id, artifact.ref)
        return problem_response(
            request,
            status=500,
            kind="artifact-damaged",
            title="Artifact damaged",
            detail=f"Action #{action_id}'s artifact no longer matches its recorded SHA-256; the operators "
            "were told in the log.",
        )
    content_type = artifact.content_type
    if _TEXTUAL.match(content_type):
        content_type += "; charset=utf-8"
    response = HttpResponse(artifact.content, content_type=content_type)
    response["X-Artifact-SHA256"] = artifact.sha256
    return response


@api.post(
    "/actions/{action_id}/cancel",
    auth=TokenWriteAuth(scope=TokenScope.CANCEL, body_limit=small_body_limit, what="The request"),
    response={200: CancelResult, **ERRORS},
    exclude_unset=True,
    operation_id="cancelAction",
    summary="Cancel an action that has not finished (scope cancel)",
    description="A queued action is cancelled at once; a RUNNING one is asked to stop at its next safe point. "
    "409 when it cannot be cancelled (finished, in the DLQ, already cancelled).",
)
def cancel_action(request: HttpRequest, action_id: int, body: ReasonIn | None = None) -> dict[str, Any]:
    token: ApiToken = request.auth  # type: ignore[attr-defined]
    if not Action.objects.filter(pk=action_id).exists():
        raise Http404(f"There is no action #{action_id}.")
    report = planner_cancel(token=token, action_id=action_id, reason=body.reason if body else None)
    action = Action.objects.get(pk=action_id)
    return {
        "changed": action_id in report.changed,
        "stop_requested": action_id in report.stop_requested,
        "action": action_out(action, detail=False),
    }


@api.get(
    "/status",
    auth=READERS,
    response={200: dict[str, Any], **ERRORS},
    operation_id="getStatus",
    summary="The daemon's flags, lease, last tick and queue counts: the console's snapshot (scope read)",
)
def get_status(request: HttpRequest) -> dict[str, Any]:
    return planner_status(token=request.auth)  # type: ignore[attr-defined]


def _stop(request: HttpRequest, verb: str, body: ReasonIn | None) -> dict[str, Any]:
    result = planner_stop(token=request.auth, verb=verb, reason=body.reason if body else None)  # type: ignore[attr-defined]
    return {"verb": verb, "changed": result.changed, "message": result.message}


STOP_AUTH = TokenWriteAuth(scope=TokenScope.PAUSE, body_limit=small_body_limit, what="The request")


@api.post(
    "/control/pause",
    auth=STOP_AUTH,
    response={200: StopResult, **ERRORS},
    operation_id="pauseDaemon",
    summary="Pause the daemon: no new action starts (scope pause)",
    description="Resuming stays with people, in the console.",
)
def pause(request: HttpRequest, body: ReasonIn | None = None) -> dict[str, Any]:
    return _stop(request, "pause", body)


@api.post(
    "/control/kill",
    auth=STOP_AUTH,
    response={200: StopResult, **ERRORS},
    operation_id="killDaemon",
    summary="Kill switch: running actions are interrupted at their next safe point (scope pause)",
    description="Reviving stays with people, in the console.",
)
def kill(request: HttpRequest, body: ReasonIn | None = None) -> dict[str, Any]:
    return _stop(request, "kill", body)
