"""The MCP server as an agent sees it: real ``manage.py aol_mcp`` processes driven by the SDK's own client.

Tests are synchronous (pytest-django, ``transaction=True`` so the server process sees the rows the
test commits); each client conversation runs in ``converse(...)`` (``anyio.run``), which touches
only MCP, never the ORM: database checks happen before and after, in the test.
"""

import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from orchestration.services.tokens import token_create
from tests.conftest import ROOT
from tests.web_server import free_port

#: The tools of the planner, and only these.
TOOLS = {"propose_action", "get_action", "list_actions", "cancel_action", "get_status", "read_artifact"}
#: Words no tool name may hold: those verbs stay with people.
PEOPLE_ONLY_WORDS = ("approve", "reject", "resume", "revive", "mode", "real", "rate", "limit")

POST = {"action_type": "POST_SOCIAL", "payload": {"platform": "x", "message": "hello from the planner"}}


def converse(script: Callable[[], Awaitable[Any]]) -> Any:
    """Run one async client conversation to its end and return what it returned."""
    return anyio.run(script)


def text(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")


@pytest.fixture
def make_token():
    """``make_token("read,propose", name=…)`` → the secret of a new API token (committed: the server sees it)."""

    def make(scopes: str = "read,propose,cancel", *, name: str = "planner") -> str:
        _, secret = token_create(name=name, scopes=scopes, actor="cli:ops@test")
        return secret

    return make


@pytest.fixture
def mcp_stdio(daemon_env, tmp_path):
    """``mcp_stdio(secret)`` → an async context manager: an SDK Client talking to ``manage.py aol_mcp`` on stdio.

    The server's stderr goes to a file; ``mcp_stdio.logs()`` returns everything every server wrote.
    """
    logs: list[Path] = []

    @asynccontextmanager
    async def connect(secret: str):
        log_path = tmp_path / f"mcp-stdio-{len(logs)}.log"
        logs.append(log_path)
        params = StdioServerParameters(
            command=sys.executable,
            args=["manage.py", "aol_mcp"],
            env={**daemon_env, "AOL_MCP_TOKEN": secret},
            cwd=ROOT,
        )
        with open(log_path, "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60) as client:
                yield client

    connect.logs = lambda: "\n".join(path.read_text() for path in logs)  # type: ignore[attr-defined]
    return connect


class McpHttpServer:
    """``manage.py aol_mcp --http`` on a free port, its output collected to a file."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "aol_mcp", "--http", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while "Uvicorn running on" not in self.output():  # logged once the socket listens
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the MCP server did not start:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return self.log_path.read_text()

    @asynccontextmanager
    async def client(self, secret: str | None):
        """An SDK Client whose every request carries ``Authorization: Bearer <secret>``."""
        headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            async with Client(streamable_http_client(self.url, http_client=http), read_timeout_seconds=60) as client:
                yield client

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def mcp_http(daemon_env, tmp_path):
    """A running ``aol_mcp --http`` on the test database; stopped at teardown."""
    server = McpHttpServer(daemon_env, tmp_path / "mcp-http.log")
    yield server
    server.stop()
