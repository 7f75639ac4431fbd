"""A local X API v2 on 127.0.0.1: the endpoints orchestration/adapters/platforms/x.py uses, as X documents them.

Followed: docs.x.com/x-api (posts/create-post, posts/delete-post, users/get-my-user,
users/get-posts) and the official SDK's generated client and models (xdevplatform/xdk,
python/xdk/posts/client.py ``create`` → POST /2/tweets, ``delete`` → DELETE /2/tweets/{id};
users/client.py ``get_me`` → GET /2/users/me, ``get_posts`` → GET /2/users/{id}/tweets with
``max_results`` 5-100, ``start_time``, ``tweet.fields``):

- ``POST /2/tweets`` ``{"text": …}`` → 201 ``{"data": {"id", "text", "edit_history_tweet_ids"}}``;
  the same text as one of the user's posts → 403 "duplicate content";
- ``DELETE /2/tweets/:id`` → 200 ``{"data": {"deleted": true}}``;
- ``GET /2/users/me`` → 200 ``{"data": {"id", "name", "username"}}``;
- ``GET /2/users/:id/tweets`` → 200 ``{"data": [{"id", "text", "edit_history_tweet_ids", …}],
  "meta": {"result_count", "newest_id", "oldest_id"}}``, newest first; the text as X returns it:
  links replaced by t.co links (``entities.urls`` has ``url``, ``expanded_url``, ``display_url``,
  ``start``, ``end``), ``& < >`` HTML-escaped;
- errors are problem documents ``{"title", "detail", "type", "status"}``; every answer has
  ``x-rate-limit-limit``, ``x-rate-limit-remaining`` and ``x-rate-limit-reset`` (epoch seconds).

- ``POST /2/oauth2/token`` (docs.x.com "OAuth 2.0 Authorization Code Flow with PKCE", refresh):
  ``application/x-www-form-urlencoded`` ``grant_type=refresh_token&refresh_token=…`` with
  ``client_id=…`` in the body (a public client) or HTTP Basic ``client_id:client_secret`` (a
  confidential one) → 200 ``{"token_type": "bearer", "expires_in": 7200, "access_token", "scope",
  "refresh_token"}``; refresh tokens rotate: the one used stops working, and using it again → 400
  ``{"error": "invalid_request", "error_description": "Value passed for the token was invalid."}``.

Scripted error answers echo the Authorization header they got (as careless APIs do), to prove it never
reaches a message; the token endpoint's refusals echo the refresh token sent. A request without
``Authorization: Bearer <a live token>`` is answered 401, as is one with a token marked expired
(``expire``). The fault script applies to POST /2/tweets (see scripted.py).
"""

import base64
import hashlib
import html
import itertools
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest

from tests.platform_servers.scripted import Reply, ScriptedServer, json_reply

TOKEN = "x-user-token-canary-5521"
USER_ID = "1849000000000000001"
USERNAME = "aicmo_brand"
REFRESH_TOKEN = "x-refresh-token-canary-7730"
CLIENT_ID = "x-client-id-aicmo"
CLIENT_SECRET = "x-client-secret-canary-9046"
_URL = re.compile(r"https?://[^\s<>\"]+")


def problem(status: int, detail: str, title: str = "") -> dict[str, Any]:
    titles = {
        400: "Invalid Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found Error",
        429: "Too Many Requests",
    }
    return {
        "title": title or titles.get(status, "Service Unavailable"),
        "detail": detail,
        "type": "about:blank",
        "status": status,
    }


def oauth_error(error: str, description: str) -> dict[str, str]:
    """The token endpoint's error body (RFC 6749 section 5.2), not a problem document."""
    return {"error": error, "error_description": description}


class XTestServer(ScriptedServer):
    name = "x"

    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        #: Access tokens X accepts besides ``token`` (issued by a refresh), and those it has expired.
        self.issued: set[str] = set()
        self.expired: set[str] = set()
        #: The refresh tokens that work now (each works once), those used, and the app's client.
        self.refresh_tokens: set[str] = {REFRESH_TOKEN}
        self.used_refresh_tokens: set[str] = set()
        self.client_id = CLIENT_ID
        #: The confidential client's secret, or None for a public client (client_id in the body).
        self.client_secret: str | None = None
        #: When set, POST /2/oauth2/token answers this status (with an OAuth error body).
        self.token_fault: int | None = None
        #: Seconds the token endpoint takes to answer (two refreshers overlapping).
        self.token_delay = 0.0
        #: Expire the token that made a post once it is stored (it runs out between a post and its lookup).
        self.expire_after_post = False
        self._serial = itertools.count(1)
        self.posts: list[dict[str, Any]] = []  # what it stored: id, text, created_at, deleted
        self.remaining = 100
        #: When set, GET /2/users/:id/tweets answers this status (a lookup that fails).
        self.lookup_fault: int | None = None

    def live_posts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [post for post in self.posts if not post["deleted"]]

    def _limits(self) -> dict[str, str]:
        with self.lock:
            self.remaining = max(self.remaining - 1, 0)
            remaining = self.remaining
        return {
            "x-rate-limit-limit": "100",
            "x-rate-limit-remaining": str(remaining),
            "x-rate-limit-reset": str(int(time.time()) + 900),
        }

    def _store(self, text: str) -> dict[str, Any]:
        with self.lock:
            post = {
                "id": str(1900000000000000000 + len(self.posts) + 1),
                "text": text,
                "created_at": datetime.now(UTC),
                "deleted": False,
            }
            self.posts.append(post)
            return post

    def expire(self, token: str | None = None) -> None:
        """Make X answer 401 to ``token`` (default: the current one) from now on."""
        with self.lock:
            self.expired.add(token or self.token)

    def token_requests(self) -> list:
        return self.received("POST", "/2/oauth2/token")

    def route(self, method, path, query, headers, body) -> Reply | None:
        limits = self._limits()
        if method == "POST" and path == "/2/oauth2/token":
            return self._token(headers, body)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        with self.lock:
            live = scheme == "Bearer" and token in ({self.token} | self.issued) and token not in self.expired
        if not live:
            return json_reply(401, problem(401, "Unauthorized"), limits)
        if method == "POST" and path == "/2/tweets":
            return self._create(body, headers, limits)
        if method == "DELETE" and path.startswith("/2/tweets/"):
            post_id = path.removeprefix("/2/tweets/")
            with self.lock:
                found = [p for p in self.posts if p["id"] == post_id and not p["deleted"]]
                for post in found:
                    post["deleted"] = True
            if not found:
                return json_reply(404, problem(404, f"Could not find tweet with id: [{post_id}]."), limits)
            return json_reply(200, {"data": {"deleted": True}}, limits)
        if method == "GET" and path == "/2/users/me":
            return json_reply(200, {"data": {"id": USER_ID, "name": "AICMO Brand", "username": USERNAME}}, limits)
        match = re.fullmatch(r"/2/users/(\d+)/tweets", path)
        if method == "GET" and match:
            return self._timeline(match.group(1), query, limits)
        return json_reply(404, problem(404, f"no route {method} {path}"), limits)

    def _token(self, headers: dict[str, str], body: bytes) -> Reply:
        """The refresh_token grant, rotating: the refresh token sent stops working."""
        form = {name: values[0] for name, values in parse_qs(body.decode()).items()}
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return json_reply(400, oauth_error("invalid_request", "Missing required parameter."))
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if self.client_secret is not None:  # a confidential client: HTTP Basic only
            try:
                client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                client_id, secret = "", ""
            if scheme != "Basic" or unquote(client_id) != self.client_id or unquote(secret) != self.client_secret:
                return json_reply(401, oauth_error("unauthorized_client", "Missing valid authorization header"))
        elif form.get("client_id") != self.client_id:
            return json_reply(400, oauth_error("invalid_request", "Missing required parameter [client_id]."))
        if self.token_fault:
            return json_reply(self.token_fault, oauth_error("server_error", "scripted token endpoint failure"))
        sent = form.get("refresh_token", "")
        time.sleep(self.token_delay)
        with self.lock:
            valid = form.get("grant_type") == "refresh_token" and sent in self.refresh_tokens
            if valid:
                serial = next(self._serial)
                access, refresh = f"x-access-refreshed-{serial}-canary", f"x-refresh-rotated-{serial}-canary"
                self.refresh_tokens.discard(sent)
                self.used_refresh_tokens.add(sent)
                self.refresh_tokens.add(refresh)
                self.issued.add(access)
        if not valid:
            return json_reply(400, oauth_error("invalid_request", f"Value passed for the token was invalid: {sent}"))
        data = {
            "token_type": "bearer",
            "expires_in": 7200,
            "access_token": access,
            "scope": "tweet.read tweet.write users.read offline.access",
            "refresh_token": refresh,
        }
        return json_reply(200, data)

    def _create(self, body: bytes, headers: dict[str, str], limits: dict[str, str]) -> Reply | None:
        step = self.next_step()
        if step == "hang":
            self.release.wait(60)
            return None
        if step == "drop-unstored":
            return None
        if step not in ("ok", "drop"):
            status, extra = step if isinstance(step, tuple) else (step, {})
            return json_reply(
                status,
                problem(status, f"scripted {status} (the request said: {headers.get('authorization')})"),
                {**limits, **extra},
            )
        try:
            text = json.loads(body)["text"]
        except (ValueError, KeyError, TypeError):
            return json_reply(400, problem(400, "The `text` field is required."), limits)
        if any(post["text"] == text for post in self.live_posts()):
            return json_reply(
                403, problem(403, "You are not allowed to create a Tweet with duplicate content."), limits
            )
        post = self._store(text)
        if self.expire_after_post:
            self.expire(headers.get("authorization", "").partition(" ")[2])
        if step == "drop":
            return None  # stored, and no answer: the client cannot know
        data = {"id": post["id"], "text": text, "edit_history_tweet_ids": [post["id"]]}
        return json_reply(201, {"data": data}, limits)

    def _timeline(self, user_id: str, query: dict[str, list[str]], limits: dict[str, str]) -> Reply:
        if self.lookup_fault:
            return json_reply(self.lookup_fault, problem(self.lookup_fault, "scripted lookup failure"), limits)
        max_results = int((query.get("max_results") or ["10"])[0])
        if not 5 <= max_results <= 100:
            return json_reply(
                400, problem(400, "The `max_results` query parameter value is not between 5 and 100"), limits
            )
        if user_id != USER_ID:
            return json_reply(200, {"meta": {"result_count": 0}}, limits)
        start = (query.get("start_time") or [""])[0]
        since = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if start else None
        fields = set(",".join(query.get("tweet.fields") or []).split(","))
        posts = [p for p in reversed(self.live_posts()) if since is None or p["created_at"] >= since][:max_results]
        if not posts:
            return json_reply(200, {"meta": {"result_count": 0}}, limits)
        data = [self._as_returned(post, fields) for post in posts]
        meta = {"result_count": len(data), "newest_id": data[0]["id"], "oldest_id": data[-1]["id"]}
        return json_reply(200, {"data": data, "meta": meta}, limits)

    @staticmethod
    def _as_returned(post: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        """A post as the API returns it: links as t.co links, & < > escaped."""
        urls, text, offset = [], post["text"], 0
        for match in _URL.finditer(post["text"]):
            short = "https://t.co/" + hashlib.sha256(match.group().encode()).hexdigest()[:10]
            start = match.start() + offset
            text = text[:start] + short + text[start + len(match.group()) :]
            offset += len(short) - len(match.group())
            urls.append(
                {"start": start, "end": start + len(short), "url": short, "expanded_url": match.group(),
                 "display_url": match.group().split("://", 1)[1][:26]}
            )  # fmt: skip
        tweet: dict[str, Any] = {
            "id": post["id"],
            "text": html.escape(text, quote=False),
            "edit_history_tweet_ids": [post["id"]],
        }
        if "created_at" in fields:
            tweet["created_at"] = (
                post["created_at"].strftime("%Y-%m-%dT%H:%M:%S.") + f"{post['created_at'].microsecond // 1000:03d}Z"
            )
        if "entities" in fields and urls:
            tweet["entities"] = {"urls": urls}
        return tweet


@pytest.fixture
def x_server():
    """A running local X API on 127.0.0.1 (``x_server.base_url``), stopped at the end of the test."""
    server = XTestServer().start()
    yield server
    server.stop()
