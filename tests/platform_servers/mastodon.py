"""A Mastodon instance's REST API on 127.0.0.1: the part the Mastodon adapter uses, as Mastodon documents it.

Followed: docs.joinmastodon.org (mastodon/documentation repo: content/en/methods/statuses.md "Post a
new status", "View a single status", "Delete a status"; methods/accounts.md "Verify account
credentials"; methods/instance.md; api/rate-limits.md; api/oauth-scopes.md; entities/Status.md,
entities/Account.md, entities/Error.md) and what mastodon-py 2.3.3 sends (mastodon/statuses.py,
mastodon/internals.py: form-encoded body, ``Authorization: Bearer``, ``Idempotency-Key``).

- ``POST /api/v1/statuses`` (form or JSON): needs a token with ``write`` or ``write:statuses`` (else
  403 ``This action is outside the authorized scopes``); an empty ``status`` is 422; an
  ``Idempotency-Key`` already used by the same account within an hour answers 200 with the status
  made the first time and stores nothing (Mastodon keeps the key in Redis for 3600 s).
- ``GET`` / ``DELETE /api/v1/statuses/:id`` (404 ``Record not found``; delete answers the deleted
  status with its ``text``), ``GET /api/v1/accounts/verify_credentials`` (``read`` or
  ``read:accounts``), ``GET /api/v1/instance`` and ``/api/v2/instance``.
- A bad or missing token is 401 ``The access token is invalid``; every answer carries
  ``X-RateLimit-Limit`` (300), ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (ISO 8601).

``server.script`` holds how to answer the next requests to ``POST /api/v1/statuses``, one entry each
(then ``"ok"``): ``"ok"``; an HTTP status (``500``, ``401``, …) or ``(429, {headers})``, answered
without storing; ``"hang"``, which waits (storing nothing) until the test ends, so the client times
out; ``"drop"``, which stores the status and closes the connection without answering (an unknown
outcome). ``server.requests`` records every request raw (method, path, headers, body bytes).
"""

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.loopback import SHUTDOWN_POLL_SECONDS

#: Tokens the instance knows: value → scopes. The first acts with full posting rights.
TOKEN = "mastodon-test-canary-token-5512"
READ_ONLY_TOKEN = "mastodon-test-readonly-token-9032"
TOKENS = {TOKEN: {"read", "write"}, READ_ONLY_TOKEN: {"read:accounts"}}
USERNAME = "brand"
RATE_LIMIT = 300
IDEMPOTENCY_SECONDS = 3600


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StoredStatus:
    id: str
    text: str
    created_at: str
    idempotency_key: str
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class MastodonTestServer:
    def __init__(self) -> None:
        self.script: deque[Any] = deque()
        self.requests: list[Received] = []
        self.statuses: list[StoredStatus] = []  # every status made (deleted ones flagged)
        self.idempotency: dict[str, tuple[str, float]] = {}  # key → (status id, when stored)
        self.lock = threading.RLock()
        self.release = threading.Event()
        self.remaining = RATE_LIMIT
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
            name="mastodon-server",
            daemon=True,
        )

    def start(self) -> "MastodonTestServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def posts(self) -> list[StoredStatus]:
        """The statuses that exist (made and not deleted)."""
        with self.lock:
            return [status for status in self.statuses if not status.deleted]

    def post_requests(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST" and r.path == "/api/v1/statuses"]

    def status_url(self, status_id: str) -> str:
        return f"{self.url}/@{USERNAME}/{status_id}"

    def account_json(self) -> dict[str, Any]:
        return {
            "id": "109000000000000001",
            "username": USERNAME,
            "acct": USERNAME,
            "display_name": "Brand",
            "locked": False,
            "bot": False,
            "created_at": "2026-01-01T00:00:00.000Z",
            "note": "",
            "url": f"{self.url}/@{USERNAME}",
            "avatar": f"{self.url}/avatars/original/missing.png",
            "header": f"{self.url}/headers/original/missing.png",
            "followers_count": 0,
            "following_count": 0,
            "statuses_count": len(self.posts),
            "fields": [],
            "emojis": [],
        }

    def status_json(self, status: StoredStatus, *, with_text: bool = False) -> dict[str, Any]:
        data = {
            "id": status.id,
            "created_at": status.created_at,
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "sensitive": False,
            "spoiler_text": "",
            "visibility": "public",
            "language": "en",
            "uri": f"{self.url}/users/{USERNAME}/statuses/{status.id}",
            "url": self.status_url(status.id),
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "content": "<p>" + _escape(status.text).replace("\n", "<br />") + "</p>",
            "reblog": None,
            "account": self.account_json(),
            "media_attachments": [],
            "mentions": [],
            "tags": [],
            "emojis": [],
            "card": None,
            "poll": None,
        }
        if with_text:
            data["text"] = status.text
        return data

    def _next(self) -> Any:
        with self.lock:
            return self.script.popleft() if self.script else "ok"

    def _create(self, text: str, key: str, extra: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Make a status, or answer the one this Idempotency-Key made within the hour."""
        with self.lock:
            now = time.time()
            if key and key in self.idempotency and now - self.idempotency[key][1] < IDEMPOTENCY_SECONDS:
                status_id = self.idempotency[key][0]
                return 200, self.status_json(next(s for s in self.statuses if s.id == status_id))
            status = StoredStatus(
                id=str(110000000000000000 + len(self.statuses) + 1),
                text=text,
                created_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                idempotency_key=key,
                extra=extra,
            )
            self.statuses.append(status)
            if key:
                self.idempotency[key] = (status.id, now)
            return 200, self.status_json(status)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


_STATUS_PATH = re.compile(r"^/api/v1/statuses/(\w+)$")


def _handler(server: MastodonTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _receive(self) -> Received:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            received = Received(self.command, self.path.split("?", 1)[0], headers, body)
            with server.lock:
                server.requests.append(received)
            return received

        def _scopes(self, received: Received) -> set[str] | None:
            auth = received.headers.get("authorization", "")
            token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
            return TOKENS.get(token)

        def _authorized(self, received: Received, scope: str) -> bool:
            """401 without a known token, 403 without ``scope`` (or its parent, e.g. ``write``)."""
            scopes = self._scopes(received)
            if scopes is None:
                self._answer(401, {"error": "The access token is invalid"})
                return False
            if scope not in scopes and scope.split(":")[0] not in scopes:
                self._answer(403, {"error": "This action is outside the authorized scopes"})
                return False
            return True

        def do_POST(self) -> None:
            received = self._receive()
            if received.path != "/api/v1/statuses":
                self._answer(404, {"error": "Record not found"})
                return
            step = server._next()
            if step == "hang":
                server.release.wait(60)
                self.close_connection = True
                return
            if step not in ("ok", "drop"):
                status, extra = step if isinstance(step, tuple) else (step, {})
                self._answer(status, {"error": f"scripted {status}"}, extra)
                return
            if not self._authorized(received, "write:statuses"):
                return
            params = _params(received)
            text = str(params.get("status") or "")
            if not text.strip():
                self._answer(422, {"error": "Validation failed: Text can't be blank"})
                return
            extra = {k: v for k, v in params.items() if k != "status"}
            status, answer = server._create(text, received.headers.get("idempotency-key", ""), extra)
            if step == "drop":
                self.close_connection = True  # stored, and no answer: the sender cannot know
                return
            self._answer(status, answer)

        def do_GET(self) -> None:
            received = self._receive()
            if received.path in ("/api/v1/instance", "/api/v2/instance"):
                self._answer(200, _instance(server, v2=received.path.startswith("/api/v2")))
                return
            if received.path == "/api/v1/accounts/verify_credentials":
                if self._authorized(received, "read:accounts"):
                    self._answer(200, {**server.account_json(), "source": {"privacy": "public", "note": ""}})
                return
            match = _STATUS_PATH.match(received.path)
            if match is None:
                self._answer(404, {"error": "Record not found"})
                return
            found = [s for s in server.posts if s.id == match.group(1)]
            if not found:
                self._answer(404, {"error": "Record not found"})
                return
            self._answer(200, server.status_json(found[0]))

        def do_DELETE(self) -> None:
            received = self._receive()
            match = _STATUS_PATH.match(received.path)
            if match is None:
                self._answer(404, {"error": "Record not found"})
                return
            if not self._authorized(received, "write:statuses"):
                return
            with server.lock:
                found = [s for s in server.statuses if s.id == match.group(1) and not s.deleted]
                if found:
                    found[0].deleted = True
            if not found:
                self._answer(404, {"error": "Record not found"})
                return
            self._answer(200, server.status_json(found[0], with_text=True))

        def _answer(self, status: int, answer: Any, extra: dict[str, str] | None = None) -> None:
            data = json.dumps(answer).encode()
            with server.lock:
                server.remaining = max(server.remaining - 1, 0) if status != 429 else 0
                remaining = server.remaining
            reset = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=5)
            headers = {
                "X-RateLimit-Limit": str(RATE_LIMIT),
                "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                **(extra or {}),
            }
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _params(received: Received) -> dict[str, Any]:
    """The form (application/x-www-form-urlencoded) or JSON body, as Rails reads either."""
    if received.headers.get("content-type", "").startswith("application/json"):
        data = json.loads(received.body or b"{}")
        return data if isinstance(data, dict) else {}
    form = parse_qs(received.body.decode("utf-8"), keep_blank_values=True)
    return {key: values[-1] for key, values in form.items()}


def _instance(server: MastodonTestServer, *, v2: bool) -> dict[str, Any]:
    statuses = {"max_characters": 500, "max_media_attachments": 4, "characters_reserved_per_url": 23}
    if v2:
        return {
            "domain": f"127.0.0.1:{server.port}",
            "title": "AOL test instance",
            "version": "4.3.0",
            "api_versions": {"mastodon": 2},
            "configuration": {"statuses": statuses},
        }
    return {"uri": f"127.0.0.1:{server.port}", "title": "AOL test instance", "version": "4.3.0",
            "configuration": {"statuses": statuses}}  # fmt: skip


@pytest.fixture
def mastodon_server():
    """A running instance on 127.0.0.1 (``mastodon_server.url``), stopped at the end of the test."""
    server = MastodonTestServer().start()
    yield server
    server.stop()
