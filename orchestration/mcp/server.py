"""The MCP server: the tools of ``orchestration/mcp/tools.py`` behind the official ``mcp`` SDK.

Two transports, one low-level ``mcp.server.Server``:

- **stdio** (``serve_stdio``): one agent, one API token (``AOL_MCP_TOKEN``). The token is checked
  before the server starts and again at every tool call, so a token revoked or expired meanwhile
  stops working at once.
- **streamable HTTP** (``http_app``): an ASGI application. ``BearerTokenAuth`` authenticates every
  HTTP request (``Authorization: Bearer <token>``, the API's tokens) before the SDK sees it and
  answers 401 otherwise; each tool call runs with the token of the request that carried it.

The ORM is synchronous: every database call runs on a worker thread (``sync_to_async`` with
``thread_sensitive=False``, so concurrent HTTP calls do not queue behind one thread), between two
``close_old_connections()`` as a Django request would, so no connection outlives its call beyond
``CONN_MAX_AGE``.
"""

import json
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from mcp import types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestration.exceptions import TokenRefused
from orchestration.mcp.tools import tool_call, tool_error, tools_list
from orchestration.models import ApiToken
from orchestration.services.tokens import token_authenticate

logger = logging.getLogger("orchestration")

SERVER_NAME = "aicmo-aol"
INSTRUCTIONS = (
    "The AICMO Autonomy Orchestration Layer: propose actions (posts, e-mails) to its queue, follow them, read "
    "their PROOF drafts and cancel them. Proposing never acts on the world by itself: REAL effects wait for a "
    "person's approval, and only people switch PROOF/REAL."
)
#: Where ``BearerTokenAuth`` leaves the authenticated ``ApiToken`` in the ASGI scope.
SCOPE_TOKEN = "aol.api_token"
HTTP_PATH = "/mcp"

#: Given the tool call's transport request (a Starlette Request over HTTP, None over stdio), the token
#: to call with; raises TokenRefused. Runs on the worker thread.
TokenSource = Callable[[Any], ApiToken]


def _in_thread(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` run on a worker thread with Django's per-request connection handling around it."""

    def with_connections(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(with_connections, thread_sensitive=False)


def mcp_server(*, token_source: TokenSource) -> Server:
    """The low-level SDK server with the six tools; each call authenticates through ``token_source``."""

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools_list())

    def call(name: str, arguments: dict[str, Any] | None, request: Any) -> types.CallToolResult:
        try:
            return tool_call(name=name, arguments=arguments, authenticate=lambda: token_source(request))
        except Exception:  # any failure is the tool's error, not the connection's
            logger.exception("MCP tool failed tool=%s", name)
            return tool_error("Internal error", "The tool failed; the server's log says why. Nothing was changed.")

    run_call = _in_thread(call)

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        result: types.CallToolResult = await run_call(params.name, params.arguments, ctx.request)
        return result

    return Server(
        SERVER_NAME,
        version="1",
        title="AICMO Autonomy Orchestration Layer",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


# --- stdio ---------------------------------------------------------------------------------------------


async def serve_stdio(*, secret: str) -> None:
    """Serve one client on stdin/stdout until it closes them; every call re-checks the token ``secret``."""
    server = mcp_server(token_source=lambda _request: token_authenticate(secret=secret))
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


# --- streamable HTTP -----------------------------------------------------------------------------------


def _token_of_request(request: Any) -> ApiToken:
    token = request.scope.get(SCOPE_TOKEN) if request is not None else None
    if not isinstance(token, ApiToken):
        raise TokenRefused("Send a valid API token: Authorization: Bearer aol_…")
    return token


def _bearer_secret(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            return secret.strip() if scheme.lower() == "bearer" else ""
    return ""


class BearerTokenAuth:
    """ASGI middleware: every HTTP request needs a live API token, or gets 401 (problem+json).

    The token is authenticated for each request, so revoking it ends access at the next request,
    and left in the scope for the tool call that request carries.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.authenticate = _in_thread(lambda secret: token_authenticate(secret=secret))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan
            await self.app(scope, receive, send)
            return
        try:
            token = await self.authenticate(_bearer_secret(scope))
        except TokenRefused as exc:
            await self._refuse(send, str(exc))
            return
        scope[SCOPE_TOKEN] = token
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send: Send, detail: str) -> None:
        body = json.dumps({"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="aol-mcp"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def http_app(*, host: str) -> ASGIApp:
    """The streamable HTTP application at ``/mcp``, behind ``BearerTokenAuth``.

    Stateless (no session kept between requests, JSON answers): any request can be served by any
    process, and the SDK's DNS-rebinding protection applies when ``host`` is a loopback address.
    """
    server = mcp_server(token_source=_token_of_request)
    app = server.streamable_http_app(streamable_http_path=HTTP_PATH, stateless_http=True, json_response=True, host=host)
    return BearerTokenAuth(app)
