"""What the X and LinkedIn test servers share: a 127.0.0.1 ThreadingHTTPServer, raw request records, a fault script.

``server.script`` holds how to answer the next requests to a *posting* endpoint, one entry each
(then ``"ok"``): ``"ok"``; an HTTP status (``500``, ``401``, …) or ``(429, {headers})``, answered
with the platform's error body, storing nothing; ``"hang"``, which waits (storing nothing) until the
test ends, so the client times out; ``"drop"``, which stores the post and closes the connection
without answering (an unknown outcome); ``"drop-unstored"``, which closes without answering and
without storing (also an unknown outcome for the client, but nothing was posted).
"""

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.loopback import SHUTDOWN_POLL_SECONDS


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] | None = None


class ScriptedServer:
    """Subclasses implement ``route(method, path, query, headers, body, step) -> Reply | None`` (None: close)."""

    name = "platform"

    def __init__(self) -> None:
        self.script: deque[Any] = deque()
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
            name=f"{self.name}-server",
            daemon=True,
        )

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_step(self) -> Any:
        with self.lock:
            return self.script.popleft() if self.script else "ok"

    def received(self, method: str | None = None, path_prefix: str = "") -> list[Received]:
        with self.lock:
            return [
                r for r in self.requests if (method is None or r.method == method) and r.path.startswith(path_prefix)
            ]

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Reply | None:
        raise NotImplementedError


def json_reply(status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


def _handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            with server.lock:
                server.requests.append(Received(self.command, self.path, headers, body))
            parts = urlsplit(self.path)
            reply = server.route(self.command, parts.path, parse_qs(parts.query), headers, body)
            if reply is None:  # "hang" or "drop": no answer
                self.close_connection = True
                return
            self.send_response(reply.status)
            for name, value in (reply.headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_DELETE = _serve

    return Handler
