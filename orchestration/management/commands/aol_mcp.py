"""``manage.py aol_mcp``: the MCP server of the AI planner, over stdio or streamable HTTP (docs/mcp.md)."""

from typing import Any

import anyio
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from orchestration.conf import aol
from orchestration.dburl import database_url_masked, redact
from orchestration.exceptions import TokenRefused
from orchestration.management.commands._common import positive_int
from orchestration.models import ApiToken
from orchestration.services.tokens import token_authenticate

#: The exit code when the server cannot start (no usable token, no database).
EXIT_CANNOT_START = 1
DEFAULT_PORT = 8765


class Command(BaseCommand):
    help = (
        "Serve the AOL's planner tools (propose_action, get_action, list_actions, cancel_action, get_status, "
        "read_artifact) over MCP. Default: stdio, as the API token in AOL_MCP_TOKEN. With --http: streamable "
        "HTTP at http://HOST:PORT/mcp, where every request must carry its own 'Authorization: Bearer <token>'. "
        "No tool approves, resumes or switches to REAL. Exit 1 when it cannot start (token missing, unknown, "
        "revoked or expired; database unreachable)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--http", action="store_true", help="Serve streamable HTTP instead of stdio (tokens per request)."
        )
        parser.add_argument("--host", default="127.0.0.1", help="--http: the address to listen on (127.0.0.1).")
        parser.add_argument(
            "--port", type=positive_int, default=DEFAULT_PORT, help=f"--http: the port ({DEFAULT_PORT})."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["http"]:
            self._serve_http(options["host"], options["port"])
        else:
            self._serve_stdio()

    def _say(self, line: str) -> None:
        # stdout carries the protocol over stdio: everything said goes to stderr.
        self.stderr.write(line, style_func=lambda text: text)
        self.stderr.flush()

    def _database_checked(self) -> None:
        try:
            connection.ensure_connection()
        except DatabaseError as exc:
            detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            raise CommandError(
                f"Cannot reach the database at {database_url_masked()}: {detail}.", returncode=EXIT_CANNOT_START
            ) from None

    def _token(self) -> tuple[ApiToken, str]:
        secret = (aol.mcp_token or "").strip()
        if not secret:
            raise CommandError(
                "Set AOL_MCP_TOKEN to the secret of an API token with the scopes the agent needs "
                "(python manage.py aol_token create NAME --scopes read,propose).",
                returncode=EXIT_CANNOT_START,
            )
        self._database_checked()
        try:
            return token_authenticate(secret=secret), secret
        except TokenRefused as exc:
            raise CommandError(f"AOL_MCP_TOKEN is refused: {exc}", returncode=EXIT_CANNOT_START) from None

    def _serve_stdio(self) -> None:
        from orchestration.mcp.server import serve_stdio

        token, secret = self._token()
        connection.close()  # the tools use their own threads' connections
        self._say(
            f"[AOL] MCP server on stdio as API token {token.name!r} (scopes: {', '.join(token.scopes)}); "
            "REAL effects wait for a person's approval."
        )
        try:
            anyio.run(lambda: serve_stdio(secret=secret))
        except KeyboardInterrupt:
            pass
        self._say("[AOL] MCP server stopped: the client closed the connection.")

    def _serve_http(self, host: str, port: int) -> None:
        import uvicorn

        from orchestration.mcp.server import HTTP_PATH, http_app

        self._database_checked()
        connection.close()
        self._say(
            f"[AOL] MCP server on http://{host}:{port}{HTTP_PATH} (streamable HTTP); every request needs "
            "'Authorization: Bearer <API token>'. REAL effects wait for a person's approval."
        )
        config = uvicorn.Config(http_app(host=host), host=host, port=port, log_level="info", lifespan="on")
        uvicorn.Server(config).run()
