"""A local LinkedIn API on 127.0.0.1: the endpoints orchestration/adapters/platforms/linkedin.py uses, as documented.

Followed: learn.microsoft.com/linkedin/marketing/community-management/shares/posts-api (version
li-lms-2026-05: create, delete, find posts by author), …/shares/little-text-format, and Sign In
with LinkedIn using OpenID Connect (/v2/userinfo):

- ``POST /rest/posts`` (headers ``LinkedIn-Version: YYYYMM``, ``X-Restli-Protocol-Version:
  2.0.0``) with ``author``, ``commentary``, ``visibility``, ``distribution``, ``lifecycleState``,
  ``isReshareDisabledByAuthor`` → 201, empty body, the post's URN in ``x-restli-id``; a missing
  field → 422 ``{"message": "ERROR :: /<field> :: field is required but not found …", "status"}``;
  an author other than the token's member → 403;
- ``DELETE /rest/posts/{URL-encoded URN}`` → 204;
- ``GET /rest/posts?author={URN}&q=author&count=…`` → 200 ``{"elements": [post, …], "paging":
  {"start", "count", "links"}}``, newest first, each post with ``id``, ``author``, ``commentary``
  (little text, as posted), ``createdAt`` / ``publishedAt`` / ``lastModifiedAt`` (epoch ms), …;
  a token without r_member_social → 403;
- ``GET /v2/userinfo`` → 200 ``{"sub", "name", "given_name", "family_name", "locale", …}``;
- errors: ``{"status", "serviceErrorCode", "code", "message"}`` (401 INVALID_ACCESS_TOKEN, a
  request without LinkedIn-Version → 400 VERSION_MISSING, 429 with Retry-After when scripted).

The fault script applies to POST /rest/posts (see scripted.py); its error answers echo the
Authorization header they got (as careless APIs do), to prove it never reaches a message.
"""

import json
import time
from typing import Any
from urllib.parse import unquote

import pytest

from tests.platform_servers.scripted import Reply, ScriptedServer, json_reply

TOKEN = "li-member-token-canary-8830"
PERSON_ID = "mV7aQ3-xK9"
PERSON_URN = f"urn:li:person:{PERSON_ID}"
REQUIRED = ("author", "commentary", "visibility", "distribution", "lifecycleState")


def error(status: int, message: str, code: str = "") -> dict[str, Any]:
    return {
        "status": status,
        "serviceErrorCode": 100 if status == 403 else 0,
        "code": code or str(status),
        "message": message,
    }


class LinkedInTestServer(ScriptedServer):
    name = "linkedin"

    def __init__(self, token: str = TOKEN, can_read_posts: bool = True) -> None:
        super().__init__()
        self.token = token
        #: The token has r_member_social (LinkedIn grants it to approved apps only).
        self.can_read_posts = can_read_posts
        self.posts: list[dict[str, Any]] = []

    def live_posts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [post for post in self.posts if not post.get("deleted")]

    def route(self, method, path, query, headers, body) -> Reply | None:
        if headers.get("authorization") != f"Bearer {self.token}":
            return json_reply(401, error(401, "Invalid access token", "INVALID_ACCESS_TOKEN"))
        if method == "GET" and path == "/v2/userinfo":
            return json_reply(
                200,
                {"sub": PERSON_ID, "name": "Ann Brand", "given_name": "Ann", "family_name": "Brand",
                 "locale": {"country": "US", "language": "en"}, "email_verified": True},
            )  # fmt: skip
        if not path.startswith("/rest/"):
            return json_reply(404, error(404, f"No route {path}"))
        if not headers.get("linkedin-version"):
            return json_reply(400, error(400, "A version must be present. Please specify a version by adding the "
                                              "LinkedIn-Version header.", "VERSION_MISSING"))  # fmt: skip
        if headers.get("x-restli-protocol-version") != "2.0.0":
            return json_reply(400, error(400, "X-Restli-Protocol-Version 2.0.0 is required"))
        if method == "POST" and path == "/rest/posts":
            return self._create(body, headers)
        if method == "DELETE" and path.startswith("/rest/posts/"):
            urn = unquote(path.removeprefix("/rest/posts/"))
            with self.lock:
                found = [p for p in self.posts if p["id"] == urn and not p.get("deleted")]
                for post in found:
                    post["deleted"] = True
            return Reply(204) if found else json_reply(404, error(404, f"Post {urn} not found"))
        if method == "GET" and path == "/rest/posts" and query.get("q") == ["author"]:
            if not self.can_read_posts:
                return json_reply(
                    403, error(403, "Not enough permissions to access: partnerApiPostsExternal.FINDER-author")
                )
            author = (query.get("author") or [""])[0]
            count = int((query.get("count") or ["10"])[0])
            elements = [p for p in reversed(self.live_posts()) if p["author"] == author][:count]
            elements = [{k: v for k, v in post.items() if k != "deleted"} for post in elements]
            return json_reply(200, {"elements": elements, "paging": {"start": 0, "count": count, "links": []}})
        return json_reply(404, error(404, f"No route {method} {path}"))

    def _create(self, body: bytes, headers: dict[str, str]) -> Reply | None:
        step = self.next_step()
        if step == "hang":
            self.release.wait(60)
            return None
        if step == "drop-unstored":
            return None
        if step not in ("ok", "drop"):
            status, extra = step if isinstance(step, tuple) else (step, {})
            return json_reply(
                status, error(status, f"scripted {status} (the request said: {headers.get('authorization')})"), extra
            )
        try:
            post = json.loads(body)
        except ValueError:
            return json_reply(400, error(400, "Request body could not be converted to data map", "ILLEGAL_ARGUMENT"))
        missing = [name for name in REQUIRED if name not in post]
        if missing:
            message = "".join(
                f"ERROR :: /{name} :: field is required but not found and has no default value\n" for name in missing
            )
            return json_reply(422, {"message": message, "status": 422})
        if post["author"] != PERSON_URN:
            return json_reply(403, error(403, f"Not enough permissions to post as {post['author']}"))
        now = int(time.time() * 1000)
        with self.lock:
            urn = f"urn:li:share:{7400000000000000000 + len(self.posts) + 1}"
            self.posts.append({**post, "id": urn, "createdAt": now, "publishedAt": now, "lastModifiedAt": now})
        if step == "drop":
            return None
        return Reply(201, b"", {"x-restli-id": urn, "x-linkedin-id": urn})


@pytest.fixture
def linkedin_server():
    """A running local LinkedIn API on 127.0.0.1 (``linkedin_server.base_url``), stopped at the end of the test."""
    server = LinkedInTestServer().start()
    yield server
    server.stop()
