"""A minimal Bluesky PDS on 127.0.0.1: the XRPC endpoints the Bluesky adapter uses, as the PDS serves them.

Followed (github.com/bluesky-social/atproto, read at d6296a1cfd):
- lexicons/com/atproto/server/createSession.json, getSession.json; identity/resolveHandle.json;
  repo/createRecord.json, getRecord.json, deleteRecord.json; app/bsky/feed/post.json (``"key": "tid"``,
  text ``maxLength`` 3000 bytes, ``maxGraphemes`` 300);
- packages/pds/src/api/com/atproto/repo/createRecord.ts, getRecord.ts, deleteRecord.ts and
  packages/pds/src/repo/prepare.ts: ``repo`` (handle or DID) must be the session's account, else 401
  AuthenticationRequired; a validated post's record key must be a TID, else 400 InvalidRequest
  "Invalid record key for app.bsky.feed.post"; a create on a key already taken fails in the repository's
  MST ("There is already a value at key", packages/repo/src/mst/mst.ts), which the XRPC server answers
  500 InternalServerError "Internal Server Error"; getRecord of a missing record is 400 RecordNotFound
  "Could not locate record: <uri>"; deleteRecord of a missing record succeeds doing nothing;
- packages/pds/src/account-manager/account-manager.ts: a wrong password is 401 AuthenticationRequired
  "Invalid identifier or password"; packages/pds/src/api/com/atproto/identity/resolveHandle.ts: an
  unknown handle is 400 InvalidRequest "Unable to resolve handle";
- packages/xrpc-server/src/rate-limiter-http.ts: every rate-limited route answers RateLimit-Limit,
  RateLimit-Remaining, RateLimit-Reset (epoch seconds) and RateLimit-Policy; over the limit, 429
  RateLimitExceeded.
Errors are XRPC's JSON ``{"error": <name>, "message": <text>}``.

``server.faults[nsid]`` holds how to answer the next calls of that method, one entry each (then
normally): an HTTP status (``500``) or ``(429, {"RateLimit-Reset": "…"})``, answered without doing
anything; ``"hang"`` waits (doing nothing) until the test ends; ``"drop"`` does the call (stores the
post) and closes the connection without answering, an unknown outcome for the client.
"""

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.loopback import SHUTDOWN_POLL_SECONDS

HANDLE = "brand.bsky.test"
DID = "did:plc:brandtestaccount00000000"
APP_PASSWORD = "abcd-efgh-ijkl-mnop-CANARY"
#: Other people the PDS can resolve (handle → DID), for mentions.
PEOPLE = {"alice.bsky.social": "did:plc:alice00000000000000000000"}
TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
RATE_LIMIT = 5000  # points per hour (repo-write-hour), as bsky.social's policy header says


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    nsid: str
    headers: dict[str, str]
    body: bytes


class BlueskyTestServer:
    def __init__(self) -> None:
        self.faults: defaultdict[str, deque[Any]] = defaultdict(deque)
        self.requests: list[Received] = []  # every request, answered or not
        self.records: dict[str, dict[str, Any]] = {}  # rkey → {"uri", "cid", "value"} (the account's posts)
        self.deleted: list[str] = []
        self.tokens: set[str] = set()  # access JWTs of open sessions
        self.issued: list[str] = []  # every access and refresh JWT given (secrets: the canary test looks for them)
        self.remaining = RATE_LIMIT
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
            name="bluesky-pds",
            daemon=True,
        )

    def start(self) -> "BlueskyTestServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def calls(self, nsid: str) -> list[Received]:
        return [r for r in self.requests if r.nsid == nsid]

    def expire_sessions(self) -> None:
        """Every access JWT given so far stops working (as when it expires)."""
        with self.lock:
            self.tokens.clear()

    # --- the methods ---------------------------------------------------------------------

    def create_session(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("identifier") not in (HANDLE, DID) or body.get("password") != APP_PASSWORD:
            return 401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}
        token = _jwt({"scope": "com.atproto.appPass", "sub": DID, "exp": int(time.time()) + 7200})
        refresh = _jwt({"scope": "com.atproto.refresh", "sub": DID, "jti": secrets.token_hex(8)})
        with self.lock:
            self.tokens.add(token)
            self.issued.extend((token, refresh))
        return 200, {"accessJwt": token, "refreshJwt": refresh, "handle": HANDLE, "did": DID, "active": True}

    def authorised(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        """None when the bearer token is a live session's, else the PDS's error answer."""
        value = headers.get("authorization", "")
        if not value.startswith("Bearer "):
            return 401, {"error": "AuthMissing", "message": "Authentication Required"}
        with self.lock:
            if value[len("Bearer ") :] not in self.tokens:
                return 400, {"error": "InvalidToken", "message": "Token could not be verified"}
        return None

    def create_record(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("repo") not in (HANDLE, DID):
            return 401, {"error": "AuthenticationRequired", "message": "Authentication Required"}
        record, rkey = body.get("record"), body.get("rkey")
        if body.get("collection") != "app.bsky.feed.post" or not isinstance(record, dict):
            return 400, {"error": "InvalidRequest", "message": "Input/record must be an object"}
        if rkey is None or not TID.match(rkey):
            return 400, {
                "error": "InvalidRequest",
                "message": "Invalid record key for app.bsky.feed.post: must be a valid TID",
            }
        text = record.get("text")
        if record.get("$type") != "app.bsky.feed.post" or not isinstance(text, str) or "createdAt" not in record:
            return 400, {"error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record"}
        if len(text.encode("utf-8")) > 3000:
            return 400, {"error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record: text too long"}
        with self.lock:
            if rkey in self.records:  # the MST refuses a second value at one key
                return 500, {"error": "InternalServerError", "message": "Internal Server Error"}
            uri = f"at://{DID}/app.bsky.feed.post/{rkey}"
            cid = "bafyrei" + hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:52]
            self.records[rkey] = {"uri": uri, "cid": cid, "value": record}
        return 200, {"uri": uri, "cid": cid, "commit": {"cid": cid, "rev": rkey}, "validationStatus": "valid"}

    def get_record(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        rkey = query.get("rkey", "")
        with self.lock:
            found = self.records.get(rkey) if query.get("repo") in (HANDLE, DID) else None
        if found is None:
            uri = f"at://{DID}/{query.get('collection')}/{rkey}"
            return 400, {"error": "RecordNotFound", "message": f"Could not locate record: {uri}"}
        return 200, dict(found)

    def delete_record(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("repo") not in (HANDLE, DID):
            return 401, {"error": "AuthenticationRequired", "message": "Authentication Required"}
        with self.lock:
            gone = self.records.pop(body.get("rkey", ""), None)
            if gone is not None:
                self.deleted.append(gone["uri"])
        return 200, ({"commit": {"cid": "bafyreidelete", "rev": "x"}} if gone else {})


def _jwt(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'typ': 'at+jwt', 'alg': 'ES256K'})}.{part(payload)}.{secrets.token_urlsafe(32)}"


def _handler(server: BlueskyTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            parts = urlsplit(self.path)
            nsid = parts.path.removeprefix("/xrpc/") if parts.path.startswith("/xrpc/") else ""
            with server.lock:
                server.requests.append(Received(self.command, parts.path, nsid, headers, body))
                fault = server.faults[nsid].popleft() if server.faults[nsid] else None
            if fault == "hang":
                server.release.wait(60)
                self.close_connection = True
                return
            if fault is not None and fault != "drop":
                status, extra = fault if isinstance(fault, tuple) else (fault, {})
                name = "RateLimitExceeded" if status == 429 else "InternalServerError"
                self._answer(status, {"error": name, "message": f"scripted {status}"}, extra)
                return
            status, answer = self._call(nsid, headers, body, {k: v[0] for k, v in parse_qs(parts.query).items()})
            if fault == "drop":
                self.close_connection = True  # done, and no answer: the client cannot know
                return
            self._answer(status, answer)

        def _call(
            self, nsid: str, headers: dict[str, str], body: bytes, query: dict[str, str]
        ) -> tuple[int, dict[str, Any]]:
            post = self.command == "POST"
            try:
                data = json.loads(body) if post else {}
            except ValueError:
                return 400, {"error": "InvalidRequest", "message": "Request body is not JSON"}
            if nsid == "com.atproto.server.createSession" and post:
                return server.create_session(data)
            if nsid == "com.atproto.identity.resolveHandle" and not post:
                did = {HANDLE: DID, **PEOPLE}.get(query.get("handle", "").lower())
                if did is None:
                    return 400, {"error": "InvalidRequest", "message": "Unable to resolve handle"}
                return 200, {"did": did}
            methods = {
                ("com.atproto.server.getSession", False): lambda: (200, {"handle": HANDLE, "did": DID, "active": True}),
                ("com.atproto.repo.createRecord", True): lambda: server.create_record(data),
                ("com.atproto.repo.getRecord", False): lambda: server.get_record(query),
                ("com.atproto.repo.deleteRecord", True): lambda: server.delete_record(data),
            }
            method = methods.get((nsid, post))
            if method is None:
                return 404, {"error": "MethodNotImplemented", "message": "Method Not Implemented"}
            if nsid == "com.atproto.repo.getRecord":  # public: no session needed
                return method()
            refused = server.authorised(headers)
            return refused if refused is not None else method()

        def _answer(self, status: int, answer: dict[str, Any], extra: dict[str, str] | None = None) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            with server.lock:
                remaining = server.remaining = max(server.remaining - 1, 0)
            limits = {
                "RateLimit-Limit": str(RATE_LIMIT),
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(int(time.time()) + 3600),
                "RateLimit-Policy": f"{RATE_LIMIT};w=3600",
                **(extra or {}),
            }
            for name, value in limits.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def bluesky_server():
    """A running PDS on 127.0.0.1 (``bluesky_server.url``), stopped at the end of the test."""
    server = BlueskyTestServer().start()
    yield server
    server.stop()
