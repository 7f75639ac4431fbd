"""A real HTTP webhook receiver on 127.0.0.1 for WEBHOOK's REAL mode, verifying signatures as docs/platforms.md says.

It does what a careful receiver does: recompute ``AOL-Signature`` over ``"<t>.<body>"`` with the
shared secret and compare in constant time (401 when it does not match or ``t`` is older than five
minutes), and keep the ``Idempotency-Key`` of every event it stored, answering a repeat with the
first answer without storing it again.

``server.script`` holds how to answer the next requests, one entry each (then ``"ok"``):
``"ok"``; an HTTP status (``500``, ``401``, …) or ``(429, {"Retry-After": "7"})``, answered without
storing; ``"hang"``, which waits (storing nothing) until the test ends, so the client times out;
``"drop"``, which stores the event and closes the connection without answering (an unknown outcome).

``server.rate_limited = {"tenant-a": [1, 4]}`` answers the next request of that account (the body's
``account``) with 429 and ``Retry-After: 4``, storing nothing, as a platform's per-account limit does.
``server.delay_seconds`` makes every answer wait that long after the request arrived (a slow receiver),
and ``server.timeline`` records each request's start and end (``time.monotonic()``) with the body's
``account``, so tests and the bench can check how many were in flight at once and that one account's
requests never overlapped (``max_in_flight``, ``overlaps``).
"""

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.loopback import SHUTDOWN_POLL_SECONDS

SECRET = "whsec-test-canary-7781"
SECRET_ENV = "AOL_TEST_WEBHOOK_SECRET"
#: Oldest signature timestamp a receiver accepts, in seconds (Stripe's default tolerance).
TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class Span:
    """One request as the receiver saw it: from its arrival to the end of its answer."""

    account: str
    start: float
    end: float


def max_in_flight(spans: list[Span]) -> int:
    """The most requests the receiver was handling at one moment."""
    edges = sorted([(span.start, 1) for span in spans] + [(span.end, -1) for span in spans])
    most = current = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start: touching is not overlapping
        current += step
        most = max(most, current)
    return most


def overlaps(spans: list[Span]) -> list[tuple[Span, Span]]:
    """Pairs of requests of one account (a non-empty ``account``) that were in flight at the same time."""
    found = []
    by_account: dict[str, list[Span]] = {}
    for span in spans:
        if span.account:
            by_account.setdefault(span.account, []).append(span)
    for group in by_account.values():
        group.sort(key=lambda span: span.start)
        found += [(a, b) for a, b in zip(group, group[1:], strict=False) if b.start < a.end]
    return found


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


def signature_valid(*, secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """The receiver's check, as docs/platforms.md describes it."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, given = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


class WebhookTestServer:
    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.script: deque[Any] = deque()
        self.requests: list[Received] = []  # every request, answered or not
        self.events: list[dict[str, Any]] = []  # what it stored, once per Idempotency-Key
        self.answers: dict[str, dict[str, Any]] = {}  # Idempotency-Key → the answer first given
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.delay_seconds = 0.0
        #: account → [how many more requests of it get 429, the Retry-After to send] (a per-account limit)
        self.rate_limited: dict[str, list[Any]] = {}
        self.timeline: list[Span] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/aol"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
            name="webhook-server",
            daemon=True,
        )

    def start(self) -> "WebhookTestServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def endpoint(self, **extra: Any) -> dict[str, Any]:
        """An AOL_WEBHOOKS entry for this server."""
        return {"url": self.url, "secret_env": SECRET_ENV, **extra}

    def _next(self) -> Any:
        with self.lock:
            return self.script.popleft() if self.script else "ok"

    def _store(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Verify, then store once per Idempotency-Key; the answer to give."""
        if not signature_valid(secret=self.secret, header=headers.get("aol-signature", ""), body=body):
            return 401, {"error": "bad signature"}
        key = headers.get("idempotency-key", "")
        with self.lock:
            if key in self.answers:
                return 200, self.answers[key]
            event = json.loads(body)
            self.events.append(event)
            number = len(self.events)
            answer = {"id": f"evt-{number}", "url": f"http://127.0.0.1:{self.port}/events/{number}"}
            self.answers[key] = answer
            return 201, answer


def _handler(server: WebhookTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        _account = ""

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            start = time.monotonic()
            try:
                self._post()
            finally:
                end = time.monotonic()
                with server.lock:
                    server.timeline.append(Span(self._account, start, end))

        def _post(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                account = json.loads(body).get("account") or ""
            except (ValueError, AttributeError):
                account = ""
            self._account = str(account)
            with server.lock:
                server.requests.append(Received(self.path, headers, body))
                limited = server.rate_limited.get(self._account)
                retry_after = None
                if limited and limited[0] > 0:
                    limited[0] -= 1
                    retry_after = str(limited[1])
            if retry_after is not None:
                self._answer(429, {"error": "rate limited"}, {"Retry-After": retry_after})
                return
            step = server._next()
            if server.delay_seconds:
                server.release.wait(server.delay_seconds)
            if step == "hang":
                server.release.wait(60)
                self.close_connection = True
                return
            if step == "drop":
                server._store(headers, body)
                self.close_connection = True  # stored, and no answer: the sender cannot know
                return
            if step == "ok":
                status, answer = server._store(headers, body)
                self._answer(status, answer)
                return
            status, extra = step if isinstance(step, tuple) else (step, {})
            self._answer(status, {"error": f"scripted {status}"}, extra)

        def _answer(self, status: int, answer: dict[str, Any], extra: dict[str, str] | None = None) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def webhook_server():
    """A running receiver on 127.0.0.1 (``webhook_server.url``), stopped at the end of the test."""
    server = WebhookTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def webhook_settings(settings, webhook_server):
    """AOL_WEBHOOKS with the endpoint ``crm`` at ``webhook_server``, its secret as settings.py would read it."""
    settings.AOL_WEBHOOKS = {"crm": webhook_server.endpoint()}
    settings.WEBHOOK_SECRETS = {SECRET_ENV: SECRET}
    return settings
