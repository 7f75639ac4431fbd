"""A small test network for the platform-independent plumbing (retract, verify): a server and its Platform.

The server on 127.0.0.1 implements the three endpoints the plumbing needs as Mastodon's public REST
API documents them (github.com/mastodon/documentation, content/en/methods/statuses.md and
content/en/methods/accounts.md; content/en/api/rate-limits.md for the headers):

- ``POST /api/v1/statuses`` (scope ``write:statuses``): JSON ``{"status": "…"}`` with an optional
  ``Idempotency-Key`` header (a repeat returns the first status); 200 with a Status (``id``, ``url``,
  ``content``, ``created_at``, ``account``).
- ``DELETE /api/v1/statuses/:id`` (scope ``write:statuses``): 200 with the deleted Status, its ``text``
  kept for a redraft; 404 ``{"error": "Record not found"}`` for an unknown id or another's status.
- ``GET /api/v1/accounts/verify_credentials`` (scope ``read:accounts``): 200 with a CredentialAccount
  (``id``, ``username``, ``acct``, ``display_name``, ``url``).

Every endpoint needs ``Authorization: Bearer <token>``: 401 ``{"error": "The access token is
invalid"}`` for an unknown token, 403 ``{"error": "This action is outside the authorized scopes"}``
without the scope; a rate-limited answer is 429 with ``X-RateLimit-Reset``. Other paths answer 404.

``server.script`` holds how to answer the next requests, one entry each (then ``"ok"``): ``"ok"``;
an HTTP status (``500``), answered without acting; ``"hang"`` (never answers, acting on nothing, so
the client times out); ``"echo"``, a 400 whose body quotes the request's Authorization header (as
some servers' errors quote the request: the plumbing must never show it).

``LocalNetwork`` is the Platform that talks to it (stdlib http.client), registered by the tests in
PLATFORMS under a real network's name (accounts and payloads only accept those). It is the
reference behaviour the real integrations follow for retract and verify: 404 on delete means the post
is already gone (done); 401, 403 and a wrong URL raise AccountCheckFailed saying what to fix.
"""

import http.client
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from orchestration.adapters.platforms import PLATFORMS, Identity, Platform, PlatformRequest, PostSpec, Published
from orchestration.credentials import account_credentials
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import (
    AccountCheckFailed,
    AccountRateLimited,
    OutcomeUnknown,
    PermanentAdapterError,
    TransientAdapterError,
)
from orchestration.models import Account, Action, ActionStatus, ClaimedMode
from orchestration.services.accounts import account_add
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.loopback import SHUTDOWN_POLL_SECONDS

TOKEN = "tok-local-network-CANARY-51c9"
READ_ONLY_TOKEN = "tok-read-only-CANARY-7a02"
HANDLE = "brand"
STATUS_PATH = re.compile(r"^/api/v1/statuses/(?P<id>[0-9]+)$")


@dataclass
class Received:
    method: str
    path: str
    authorization: str
    body: bytes


@dataclass
class LocalNetworkServer:
    """The server's state: tokens → scopes, statuses by id, every request it got."""

    tokens: dict[str, set[str]] = field(
        default_factory=lambda: {TOKEN: {"read:accounts", "write:statuses"}, READ_ONLY_TOKEN: {"read:accounts"}}
    )
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    script: deque[Any] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.keys: dict[str, str] = {}  # Idempotency-Key → status id
        self.next_id = 110000
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
            name="local-network",
            daemon=True,
        )

    def start(self) -> "LocalNetworkServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_answer(self) -> Any:
        with self.lock:
            return self.script.popleft() if self.script else "ok"

    def status_url(self, status_id: str) -> str:
        return f"{self.url}/@{HANDLE}/{status_id}"


def _handler(server: LocalNetworkServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            authorization = self.headers.get("Authorization", "")
            with server.lock:
                server.requests.append(Received(self.command, self.path, authorization, body))
            answer = server.next_answer()
            if answer == "hang":
                server.release.wait(30)
                return
            if answer == "echo":
                self._answer(400, {"error": f"Bad request: Authorization: {authorization}"})
                return
            if isinstance(answer, int):
                headers = {"X-RateLimit-Reset": "2030-01-01T00:00:00.000Z"} if answer == 429 else {}
                self._answer(answer, {"error": "Too many requests" if answer == 429 else "Internal error"}, headers)
                return
            route = self._route()
            if route is None:
                self._answer(404, {"error": "Record not found"})
                return
            scope, act = route
            token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
            if token not in server.tokens:
                self._answer(401, {"error": "The access token is invalid"})
                return
            if scope not in server.tokens[token]:
                self._answer(403, {"error": "This action is outside the authorized scopes"})
                return
            act(body)

        def _route(self) -> tuple[str, Any] | None:
            path = urlsplit(self.path).path
            if self.command == "GET" and path == "/api/v1/accounts/verify_credentials":
                return "read:accounts", self._verify
            if self.command == "POST" and path == "/api/v1/statuses":
                return "write:statuses", self._post
            match = STATUS_PATH.match(path)
            if self.command == "DELETE" and match:
                return "write:statuses", lambda body: self._delete(match["id"])
            return None

        def _account(self) -> dict[str, Any]:
            return {
                "id": "1",
                "username": HANDLE,
                "acct": HANDLE,
                "display_name": "Brand",
                "url": f"{server.url}/@{HANDLE}",
            }

        def _verify(self, body: bytes) -> None:
            self._answer(200, {**self._account(), "source": {"privacy": "public", "note": ""}})

        def _post(self, body: bytes) -> None:
            text = json.loads(body or b"{}").get("status", "")
            key = self.headers.get("Idempotency-Key", "")
            with server.lock:
                if key and key in server.keys:
                    status = server.statuses[server.keys[key]]
                else:
                    server.next_id += 1
                    status_id = str(server.next_id)
                    status = {
                        "id": status_id,
                        "url": server.status_url(status_id),
                        "content": f"<p>{text}</p>",
                        "text": text,
                        "created_at": datetime.now(UTC).isoformat(),
                        "account": self._account(),
                    }
                    server.statuses[status_id] = status
                    if key:
                        server.keys[key] = status_id
            self._answer(200, {k: v for k, v in status.items() if k != "text"})

        def _delete(self, status_id: str) -> None:
            with server.lock:
                status = server.statuses.pop(status_id, None)
                if status is not None:
                    server.deleted.append(status_id)
            if status is None:
                self._answer(404, {"error": "Record not found"})
            else:
                self._answer(200, status)

        do_GET = do_POST = do_DELETE = _handle

    return Handler


# --- The Platform the tests register -----------------------------------------------------------------


class LocalNetwork(Platform):
    """Talks to ``LocalNetworkServer``; registered as ``mastodon`` (a network accounts may name)."""

    name = "mastodon"
    label = "Local network"
    max_chars = 500
    credential_fields = ("access_token",)

    def _call(
        self, method: str, *, account: Any, credentials: dict[str, str], path: str, body: bytes, timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(self.base_url(account))
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
        headers = {"Authorization": f"Bearer {credentials['access_token']}", "Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, parts.path + path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        except ConnectionRefusedError:
            raise TransientAdapterError(f"nobody answers at {self.base_url(account)}") from None
        except (TimeoutError, http.client.RemoteDisconnected):
            raise OutcomeUnknown(f"no answer within {timeout:g} s") from None
        finally:
            connection.close()

    def build_request(self, *, account: Any, spec: PostSpec) -> PlatformRequest:
        return PlatformRequest(
            method="POST",
            url=f"{self.base_url(account)}/api/v1/statuses",
            headers=(("Content-Type", "application/json"), ("Idempotency-Key", spec.idempotency_key)),
            body=json.dumps({"status": spec.text}).encode(),
        )

    def publish(
        self, *, account: Any, credentials: dict[str, str], request: PlatformRequest, spec: PostSpec, attempt: Any
    ) -> Published:
        status, _, body = self._call(
            "POST", account=account, credentials=credentials, path="/api/v1/statuses", body=request.body, timeout=10
        )
        if status != 200:
            raise PermanentAdapterError(f"the network answered {status}")
        answer = json.loads(body)
        return Published(remote_id=answer["id"], remote_url=answer["url"])

    def retract(self, *, account: Any, credentials: dict[str, str], remote_id: str, timeout: float) -> None:
        status, headers, body = self._call(
            "DELETE",
            account=account,
            credentials=credentials,
            path=f"/api/v1/statuses/{remote_id}",
            body=b"",
            timeout=timeout,
        )
        if status in (200, 404):  # 404: already gone, which is what a retract wants
            return
        if status == 401:
            raise PermanentAdapterError("the access token is invalid (revoked?); set new credentials")
        if status == 403:
            raise PermanentAdapterError("the token lacks the write:statuses scope; create one that has it")
        if status == 429:
            reset = headers.get("X-RateLimit-Reset", "?")
            raise AccountRateLimited(f"rate limited until {reset}", retry_after_seconds=60, account=account.name)
        if status >= 500:
            raise TransientAdapterError(f"the network failed (HTTP {status}); try again later")
        raise RuntimeError(f"unexpected answer {status}: {body.decode(errors='replace')}")  # as an SDK might

    def verify(self, *, account: Any, credentials: dict[str, str], timeout: float) -> Identity:
        try:
            status, _, body = self._call(
                "GET",
                account=account,
                credentials=credentials,
                path="/api/v1/accounts/verify_credentials",
                body=b"",
                timeout=timeout,
            )
        except (TransientAdapterError, OutcomeUnknown) as exc:
            raise AccountCheckFailed(f"wrong URL? {exc}") from None
        if status == 200:
            answer = json.loads(body)
            return Identity(handle=answer["acct"], remote_id=answer["id"], url=answer["url"])
        if status == 401:
            raise AccountCheckFailed("bad token: the network says the access token is invalid; set new credentials")
        if status == 403:
            raise AccountCheckFailed("missing scope: the token lacks read:accounts; create one that has it")
        if status == 404:
            raise AccountCheckFailed(f"wrong URL: {self.base_url(account)} has no such API; check the base URL")
        raise RuntimeError(f"unexpected answer {status}: {body.decode(errors='replace')}")  # as an SDK might


class LocalNetworkNoRetract(LocalNetwork):
    """The same network, but an integration that cannot delete posts (registered as ``x``)."""

    name = "x"
    label = "Local network without retract"
    can_retract = False


# --- Fixtures and helpers ------------------------------------------------------------------------------

CREDENTIALS_KEY = Fernet.generate_key().decode()


@pytest.fixture
def local_network(monkeypatch, settings):
    """The server, started; LocalNetwork registered as ``mastodon`` and LocalNetworkNoRetract as ``x``;
    credentials keys set; no approval gate (these tests are about what happens after a REAL run)."""
    server = LocalNetworkServer().start()
    settings.AOL_CREDENTIALS_KEYS = [CREDENTIALS_KEY]
    settings.AOL_APPROVAL_REQUIRED_TYPES = []
    monkeypatch.setitem(PLATFORMS, LocalNetwork.name, LocalNetwork())
    monkeypatch.setitem(PLATFORMS, LocalNetworkNoRetract.name, LocalNetworkNoRetract())
    yield server
    server.stop()


def account_connect(
    server: LocalNetworkServer, *, name: str = "brand-main", platform: str = "mastodon", token: str = TOKEN
) -> Account:
    return account_add(
        name=name,
        platform=platform,
        base_url=server.url,
        credentials={"access_token": token},
        actor="ops",
        reason="test account",
    )


def real_post(*, key: str = "post-1", account: str = "brand-main", platform: str = "mastodon") -> Action:
    """A POST_SOCIAL action run in REAL mode by an in-process daemon (one tick): SUCCESS with its remote id."""
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": platform, "account": account, "message": f"Spring sale {key}"},
        idempotency_key=key,
    )
    control_set_proof_mode(enabled=False, actor="ops", reason="REAL for the test")
    # run(), not tick(): its shutdown ends the adapter thread, which closes that thread's connection.
    config = DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01, max_ticks=1)
    assert Daemon(config, out=lambda line: None).run() == 0
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS and action.remote_id, (action.status, action.last_error)
    return action


def posted_action(server: LocalNetworkServer, *, key: str = "posted-1", account: str = "brand-main") -> Action:
    """A SUCCESS REAL POST_SOCIAL action whose post is on ``server``, published by LocalNetwork as a REAL run
    does, without a daemon (so it works inside a test's transaction); connects the account if needed."""
    connected = Account.objects.filter(name=account).first() or account_connect(server, name=account)
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "mastodon", "account": account, "message": f"Spring sale {key}"},
        idempotency_key=key,
        not_before=timezone.now() + timedelta(hours=1),
    )
    platform = PLATFORMS["mastodon"]
    spec = PostSpec(text=action.payload["message"], idempotency_key=key, created_at=action.created_at)
    published = platform.publish(
        account=connected,
        credentials=account_credentials(account=connected),
        request=platform.build_request(account=connected, spec=spec),
        spec=spec,
        attempt=None,
    )
    Action.objects.filter(pk=action.pk).update(
        status=ActionStatus.SUCCESS,
        claimed_mode=ClaimedMode.REAL,
        attempts=1,
        remote_id=published.remote_id,
        remote_url=published.remote_url,
    )
    action.refresh_from_db()
    return action
