"""LinkedIn: post, look up, delete and verify a member's posts through the versioned Posts API.

Endpoints (learn.microsoft.com/linkedin/marketing/community-management/shares/posts-api and
…/little-text-format, version li-lms-2026-05; Sign In with LinkedIn using OpenID Connect for
userinfo): ``POST /rest/posts`` with ``LinkedIn-Version: YYYYMM`` and ``X-Restli-Protocol-Version:
2.0.0`` → 201, the post's URN in the ``x-restli-id`` header; ``DELETE /rest/posts/{encoded URN}`` →
204; ``GET /rest/posts?author={encoded URN}&q=author&count=…`` (finder, ``X-RestLi-Method: FINDER``)
→ ``{"elements": [...], "paging": {...}}``; ``GET /v2/userinfo`` → ``{"sub", "name", …}`` (``sub`` is
the member's person id).

There is no well-kept LinkedIn SDK for posting (linkedin-api-client 0.3.0 dates from 2023 and is
marked beta), so rest.py sends the rendered bytes with the standard library.

Credentials: ``{"access_token": …, "person_id": …}``: a 3-legged OAuth 2.0 member token with the
scopes ``w_member_social openid profile`` and the member's id (``sub`` of /v2/userinfo;
``aol_accounts verify`` shows it and checks they belong together). The person id is stored with
the token, not looked up at sending, because it is part of the post's body, and the body is what
PROOF renders and a person approves: it must come from what is stored, not from a call.

Text: the commentary is "little text", where ``\\ | { } @ [ ] ( ) < > * _ ~`` are markup; each is
escaped with a backslash (``#`` is left alone, so hashtags stay hashtags), and the 3,000 characters
are counted on the escaped text, as posted. LinkedIn has no idempotency key: a post whose answer was
lost is looked up among the author's recent posts (which needs read access to them, the
``r_member_social`` scope LinkedIn grants only to approved apps; without it the lookup is refused
and the action is parked NEEDS_REVIEW).
"""

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from orchestration.adapters.platforms.base import Identity, Platform, PlatformRequest, PostSpec, Published, TextCount
from orchestration.adapters.platforms.rest import (
    USER_AGENT,
    Answer,
    AnswerLost,
    RequestNotSent,
    origin,
    rest_publish,
    rest_send,
    rest_timeouts,
)
from orchestration.exceptions import (
    AccountCheckFailed,
    AccountRateLimited,
    CredentialsUnavailable,
    OutcomeUnknown,
    PermanentAdapterError,
    TransientAdapterError,
)

if TYPE_CHECKING:
    from orchestration.adapters.base import Attempt
    from orchestration.models import Account

#: The Posts API version sent (LinkedIn-Version): versions are sunset about a year after release.
LINKEDIN_VERSION = "202605"
MAX_CHARS = 3000
#: Characters little text treats as markup, escaped with a backslash in the commentary (not ``#``: hashtags).
RESERVED = "\\|{}@[]()<>*_~"
_RESERVED = re.compile("([" + re.escape(RESERVED) + "])")
_PERSON_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
#: The most recent posts a lookup reads.
LOOKUP_COUNT = 50
TOKEN_HELP = (
    "get a new member access token (OAuth 2.0 authorization code flow, scopes w_member_social openid profile; "
    "it lasts 60 days) and store it with the account's credentials (docs/platforms.md, LinkedIn)"
)


def linkedin_commentary(text: str) -> str:
    """The text as little text: each reserved character escaped with a backslash (the same text, the same bytes)."""
    return _RESERVED.sub(r"\\\1", text)


def linkedin_person_urn(credentials: dict[str, str]) -> str:
    """The author URN, from the stored person id; PermanentAdapterError saying how to get it when it is missing."""
    person = credentials.get("person_id", "")
    if person.startswith("urn:li:person:"):
        person = person.removeprefix("urn:li:person:")
    if not _PERSON_ID.match(person):
        raise PermanentAdapterError(
            "the LinkedIn account's credentials need person_id, the member's id (the 'sub' of GET /v2/userinfo, "
            "which aol_accounts verify shows); add it to the credentials"
        )
    return f"urn:li:person:{person}"


class LinkedInPlatform(Platform):
    name = "linkedin"
    label = "LinkedIn"
    max_chars = MAX_CHARS
    is_idempotent = False
    can_retract = True
    credential_fields = ("access_token", "person_id")
    default_base_url = "https://api.linkedin.com"

    def text_count(self, text: str) -> TextCount:
        return TextCount(count=len(linkedin_commentary(text)), limit=MAX_CHARS, unit="characters (as posted)")

    def text_problems(self, text: str) -> list[str]:
        if not text.strip():
            return ["'message' must not be empty"]
        return super().text_problems(text)

    def build_request(self, *, account: "Account", spec: PostSpec) -> PlatformRequest:
        from orchestration.credentials import account_credentials

        try:
            author = linkedin_person_urn(account_credentials(account=account))
        except CredentialsUnavailable as exc:
            raise PermanentAdapterError(f"the post's author cannot be read: {exc}") from None
        post = {
            "author": author,
            "commentary": linkedin_commentary(spec.text),
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        body = json.dumps(post, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = (
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("User-Agent", USER_AGENT),
            ("LinkedIn-Version", LINKEDIN_VERSION),
            ("X-Restli-Protocol-Version", "2.0.0"),
        )
        return PlatformRequest(method="POST", url=f"{self.base_url(account)}/rest/posts", headers=headers, body=body)

    def publish(
        self,
        *,
        account: "Account",
        credentials: dict[str, str],
        request: PlatformRequest,
        spec: PostSpec,
        attempt: "Attempt",
    ) -> Published:
        where = f"LinkedIn ({origin(request.url)})"
        answer = rest_publish(request=request, authorization=_bearer(credentials), attempt=attempt, where=where)
        if answer.status in (200, 201):
            urn = answer.headers.get("x-restli-id", "")
            if not urn:
                raise OutcomeUnknown(f"{where} answered {answer.status} without the post's URN (x-restli-id)")
            return Published(remote_id=urn, remote_url=linkedin_post_url(urn))
        raise _refusal(account, answer, where, doing="post")

    def find_published(
        self, *, account: "Account", credentials: dict[str, str], spec: PostSpec, attempt: "Attempt"
    ) -> Published | None:
        """The author's posts since the action was created, searched for the exact commentary."""
        base = self.base_url(account)
        where = f"LinkedIn ({origin(base)})"
        try:
            author = linkedin_person_urn(credentials)
        except PermanentAdapterError as exc:  # the post may be out: never a DLQ from here
            raise OutcomeUnknown(f"the post's answer was lost and it cannot be looked up: {exc}") from None
        query = urlencode({"author": author, "q": "author", "count": LOOKUP_COUNT, "sortBy": "CREATED"})
        try:
            answer = rest_send(
                method="GET",
                url=f"{base}/rest/posts?{query}",
                headers={**_read_headers(credentials), "X-RestLi-Method": "FINDER"},
                timeouts=rest_timeouts(attempt),
            )
        except (RequestNotSent, AnswerLost) as exc:
            raise OutcomeUnknown(f"the post's answer was lost and looking it up failed: {where}: {exc}") from None
        if answer.status != 200:
            hint = (
                " (reading a member's posts needs the r_member_social scope, which LinkedIn grants to approved apps)"
                if answer.status == 403
                else ""
            )
            raise OutcomeUnknown(
                f"the post's answer was lost and looking it up failed: {where} answered {answer.status}{hint}: "
                f"{answer.said()}"
            )
        since_ms = int(spec.created_at.timestamp()) * 1000  # to the second, as X's lookup
        wanted = linkedin_commentary(spec.text)
        for post in (answer.json() or {}).get("elements") or []:
            if not isinstance(post, dict) or post.get("author") != author:
                continue
            created = post.get("createdAt") or post.get("publishedAt") or 0
            if isinstance(created, int) and created >= since_ms and post.get("commentary") == wanted and post.get("id"):
                return Published(remote_id=str(post["id"]), remote_url=linkedin_post_url(str(post["id"])))
        return None

    def retract(self, *, account: "Account", credentials: dict[str, str], remote_id: str, timeout: float) -> None:
        base = self.base_url(account)
        where = f"LinkedIn ({origin(base)})"
        try:
            answer = rest_send(
                method="DELETE",
                url=f"{base}/rest/posts/{quote(remote_id, safe='')}",
                headers={**_read_headers(credentials), "X-RestLi-Method": "DELETE"},
                timeouts=(min(timeout, 5.0), timeout),
            )
        except RequestNotSent as exc:
            raise TransientAdapterError(f"{where}: could not connect ({exc}); nothing was deleted") from None
        except AnswerLost as exc:
            raise TransientAdapterError(f"{where}: {exc}; the post may or may not be deleted, try again") from None
        if answer.status in (200, 204, 404):  # 404: already gone
            return
        raise _refusal(account, answer, where, doing="delete")

    def verify(self, *, account: "Account", credentials: dict[str, str], timeout: float) -> Identity:
        base = self.base_url(account)
        where = f"LinkedIn ({origin(base)})"
        try:
            answer = rest_send(
                method="GET",
                url=f"{base}/v2/userinfo",
                headers={"Authorization": _bearer(credentials), "User-Agent": USER_AGENT},
                timeouts=(min(timeout, 5.0), timeout),
            )
        except RequestNotSent as exc:
            raise AccountCheckFailed(f"Could not reach {where} ({exc}): check the base URL.") from None
        except AnswerLost as exc:
            raise AccountCheckFailed(f"{where} did not answer ({exc}); try again.") from None
        info = answer.json() if answer.status == 200 else None
        if not isinstance(info, dict) or not info.get("sub"):
            message = _advice(answer, where, doing="say who the token is")
            if answer.status == 403:
                message = f"{where} refused /v2/userinfo (403): the token lacks the openid and profile scopes; " + (
                    TOKEN_HELP
                )
            raise AccountCheckFailed(message[0].upper() + message[1:] + ".")
        sub = str(info["sub"])
        stored = credentials.get("person_id", "").removeprefix("urn:li:person:")
        if stored != sub:
            raise AccountCheckFailed(
                f"The token belongs to {info.get('name') or 'a member'} (person id {sub}), but the credentials' "
                f"person_id is {stored or 'missing'}: set person_id to {sub!r}."
            )
        return Identity(handle=str(info.get("name") or sub), remote_id=f"urn:li:person:{sub}")


def linkedin_post_url(urn: str) -> str:
    return f"https://www.linkedin.com/feed/update/{urn}/"


def _bearer(credentials: dict[str, str]) -> str:
    token = credentials.get("access_token", "")
    if not token:
        raise PermanentAdapterError("the account's credentials have no access_token; " + TOKEN_HELP)
    return f"Bearer {token}"


def _read_headers(credentials: dict[str, str]) -> dict[str, str]:
    return {
        "Authorization": _bearer(credentials),
        "User-Agent": USER_AGENT,
        "LinkedIn-Version": LINKEDIN_VERSION,
        "X-Restli-Protocol-Version": "2.0.0",
    }


def _refusal(account: "Account", answer: Answer, where: str, *, doing: str) -> Exception:
    if answer.status == 429:
        wait = _retry_seconds(answer)
        return AccountRateLimited(
            f"{where} rate-limited account {account.name!r} (429, retry in {wait:g}s); nothing was posted",
            retry_after_seconds=wait,
            account=account.name,
        )
    if 500 <= answer.status < 600:
        return TransientAdapterError(f"{where} answered {answer.status} {answer.reason}: {answer.said()}")
    return PermanentAdapterError(_advice(answer, where, doing=doing))


def _retry_seconds(answer: Answer, now: datetime | None = None) -> float:
    """Retry-After when given; else until midnight UTC, when LinkedIn's daily limits reset."""
    raw = answer.headers.get("retry-after", "").strip()
    if raw.isdigit():
        return max(min(float(raw), 86400.0), 1.0)
    now = now or datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max((midnight - now).total_seconds(), 1.0)


def _advice(answer: Answer, where: str, *, doing: str) -> str:
    body: Any = answer.json()
    said = answer.scrub(str(body["message"])) if isinstance(body, dict) and body.get("message") else answer.said()
    detail = f"{where} refused to {doing}: {answer.status} {answer.reason}" + (f": {said}" if said else "")
    if answer.status == 401:
        return f"{detail}. The access token is expired or revoked: {TOKEN_HELP}"
    if answer.status == 403:
        return (
            f"{detail}. The token lacks the w_member_social scope, or person_id is not the token's member "
            "(aol_accounts verify checks both)"
        )
    if answer.status == 426 or "version" in said.lower() and answer.status == 400:
        return f"{detail}. LinkedIn-Version {LINKEDIN_VERSION} is no longer served: update LINKEDIN_VERSION"
    if answer.status == 404:
        return f"{detail}. Check the account's base URL (it should be https://api.linkedin.com)"
    return f"{detail}. Fix the text or the account and enqueue it again"


PLATFORM = LinkedInPlatform()
