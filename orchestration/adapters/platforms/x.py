"""X (Twitter): post, look up, delete and verify through the X API v2 with an OAuth 2.0 user access token.

Endpoints (docs.x.com/x-api; the official SDK xdevplatform/xdk, python/xdk/posts/client.py and
users/client.py, calls the same paths): ``POST /2/tweets`` ``{"text": …}`` → 201
``{"data": {"id", "text"}}``; ``DELETE /2/tweets/:id`` → ``{"data": {"deleted": true}}``;
``GET /2/users/me`` → ``{"data": {"id", "name", "username"}}``; ``GET /2/users/:id/tweets``
(``max_results`` 5-100, ``start_time``, ``tweet.fields``) → ``{"data": [...], "meta": {...}}``.
Every answer carries ``x-rate-limit-limit/remaining/reset`` (reset: epoch seconds).

Why not the SDK: xdk (0.10.6) can target another base URL, but it serialises the body itself
(requests' ``json=``) from a pydantic model, so the bytes PROOF shows and an approval binds could
not be the bytes sent, and its errors are ``requests`` exceptions that do not tell "never sent" from
"sent, no answer". rest.py sends the rendered bytes with the standard library instead.

X has no idempotency key: a post whose answer was lost is looked up among the account's posts made
since the action was created (``find_published``); not found, the action is parked NEEDS_REVIEW.
(X itself refuses a second post with the same text as a recent one: 403 "duplicate content".)

Credentials: ``{"access_token": …}`` (an OAuth 2.0 Authorization Code with PKCE user token with
the scopes tweet.read tweet.write users.read, and offline.access for a refresh token), optionally
``user_id`` and ``username`` (what ``aol_accounts verify`` shows): the username makes the post's URL
https://x.com/<username>/status/<id> (without it, https://x.com/i/web/status/<id>, which X
redirects), and the user id saves the lookup its who-am-I call. Text: 280 weighted characters as
twitter-text counts them (``x_text_count``).

Token refresh: an access token lasts two hours. With ``refresh_token`` and the app's ``client_id``
(and ``client_secret`` for a confidential client, sent as HTTP Basic) stored too, a call as the
account first renews a token that ``expires_at`` (unix seconds, written here after each refresh)
says ends within a minute, and renews it once on a 401 (X did nothing, so the call is repeated):
``POST /2/oauth2/token`` ``grant_type=refresh_token`` through authlib's OAuth2Client. X rotates the
refresh token on every refresh; the new pair is stored at once (services/accounts.py
``account_credentials_renew``, which also keeps two processes from spending the same refresh token)
and written into the ``credentials`` dict the caller passed, so its later calls use it. A refusal
(400/401: expired, revoked or already used) means authorizing the app again. The rendered request
(PROOF, approvals) has no Authorization header, so a refresh changes nothing an approval bound.
"""

import html
import json
import math
import re
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx2
from authlib.integrations.httpx_client import OAuth2Client, OAuthError

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
    AdapterError,
    CredentialsUnavailable,
    InvalidAccount,
    OutcomeUnknown,
    PermanentAdapterError,
    TransientAdapterError,
)

if TYPE_CHECKING:
    from orchestration.adapters.base import Attempt
    from orchestration.models import Account

# --- Counting as twitter-text does (config v3: twitter/twitter-text config/v3.json) ---------------------------------
#: maxWeightedTweetLength / scale.
MAX_WEIGHTED_LENGTH = 280
SCALE = 100
DEFAULT_WEIGHT = 200
#: Every URL counts as a t.co link of this length, however long it is.
TRANSFORMED_URL_LENGTH = 23
#: Code point ranges that weigh 100 (one character); everything else (CJK, most symbols, emoji) weighs 200.
LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
#: Top-level domains a URL without a scheme is recognised by (twitter-text knows every TLD; these are the common ones).
_TLDS = (
    "com|org|net|edu|gov|io|co|ai|dev|app|info|biz|me|ly|tv|uk|us|de|fr|es|it|nl|eu|ca|au|jp|in|br|ch|se|no|"
    "fi|dk|pl|be|at|ie|nz|xyz|online|site|shop|blog|news|tech|cloud|ly|gg|fm|to|sh|so|page|link"
)
_URL = re.compile(
    r"(?<![\w@.-])(?:https?://[^\s<>\"]+|www\.[^\s<>\"]+|(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:"
    + _TLDS
    + r")\b(?:/[^\s<>\"]*)?)",
    re.IGNORECASE,
)
#: Punctuation that ends a sentence rather than a URL.
_URL_TRAILING = ".,;:!?'\")]}"
_EMOJI_BASE = (
    "\U0001f000-\U0001faff\u2600-\u27bf\u2300-\u23ff\u2b00-\u2bff\u2190-\u21ff\u2900-\u297f\u3030\u303d\u3297\u3299"
)
_EMOJI_TAIL = "\ufe0f\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f\u20e3"
_EMOJI = re.compile(
    r"[\U0001f1e6-\U0001f1ff]{2}"  # a flag: two regional indicators
    r"|[0-9#*]\ufe0f?\u20e3"  # a keycap
    r"|[\u00a9\u00ae\u203c\u2049\u2122\u2139]\ufe0f"  # text symbols in emoji presentation
    rf"|[{_EMOJI_BASE}][{_EMOJI_TAIL}]*(?:\u200d[{_EMOJI_BASE}][{_EMOJI_TAIL}]*)*"  # ZWJ sequences, skin tones
)


def _urls(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in _URL.finditer(text):
        start, end = match.span()
        while end > start and text[end - 1] in _URL_TRAILING:
            end -= 1
        spans.append((start, end))
    return spans


def x_text_count(text: str) -> int:
    """The text's length as X counts it: NFC, URLs as 23, emoji sequences as 2, CJK and others by their weight."""
    text = unicodedata.normalize("NFC", text)
    weighted = 0
    url_ends = dict(_urls(text))
    position = 0
    while position < len(text):
        if position in url_ends:
            weighted += TRANSFORMED_URL_LENGTH * SCALE
            position = url_ends[position]
            continue
        emoji = _EMOJI.match(text, position)
        if emoji and emoji.end() > position:
            weighted += DEFAULT_WEIGHT
            position = emoji.end()
            continue
        point = ord(text[position])
        weighted += SCALE if any(low <= point <= high for low, high in LIGHT_RANGES) else DEFAULT_WEIGHT
        position += 1
    return math.ceil(weighted / SCALE)


def x_text_normalized(text: str) -> str:
    """How a post's text compares: NFC, surrounding whitespace dropped (X trims it)."""
    return unicodedata.normalize("NFC", text).strip()


def x_post_text(tweet: dict[str, Any]) -> str:
    """A looked-up post's text as it was posted: t.co links expanded back, X's HTML escapes (&amp; …) undone."""
    text = str(tweet.get("text") or "")
    urls = ((tweet.get("entities") or {}).get("urls")) or []
    for entry in urls:
        if isinstance(entry, dict) and entry.get("url") and entry.get("expanded_url"):
            text = text.replace(str(entry["url"]), str(entry["expanded_url"]), 1)
    return html.unescape(text)


# --- The platform ---------------------------------------------------------------------------------------------------
#: The most recent posts a lookup reads (the API's maximum page).
LOOKUP_MAX_RESULTS = 100
#: The longest a rate limit defers an account (a day), whatever the reset header says.
MAX_RATE_LIMIT_SECONDS = 86400.0
#: The scopes the AOL needs; offline.access is what makes X issue a refresh token.
SCOPES = "tweet.read tweet.write users.read offline.access"
TOKEN_HELP = (
    f"authorize the app again (OAuth 2.0 Authorization Code with PKCE, scopes {SCOPES}) and store the new "
    "access_token, with its refresh_token and the app's client_id so the AOL renews it itself (an access token "
    "lasts two hours), in the account's credentials (docs/platforms.md, X)"
)
#: X's OAuth 2.0 token endpoint, under the base URL.
TOKEN_PATH = "/2/oauth2/token"
#: Renew an access token before a call when ``expires_at`` is closer than this, rather than meet a 401.
REFRESH_MARGIN_SECONDS = 60.0
#: The token request's own limits: the account's row is locked while it runs (services/accounts.py).
REFRESH_CONNECT_TIMEOUT_SECONDS = 5.0
REFRESH_READ_TIMEOUT_SECONDS = 10.0
#: Credential fields whose values are secrets, blanked out of any text X sends back.
SECRET_FIELDS = ("access_token", "refresh_token", "client_secret")
#: Who the audit names for a refresh.
REFRESH_ACTOR = "aol (X token refresh)"


class XPlatform(Platform):
    name = "x"
    label = "X"
    max_chars = MAX_WEIGHTED_LENGTH
    is_idempotent = False
    can_retract = True
    credential_fields = ("access_token",)
    default_base_url = "https://api.x.com"

    def text_count(self, text: str) -> TextCount:
        return TextCount(count=x_text_count(text), limit=MAX_WEIGHTED_LENGTH, unit="weighted characters")

    def text_problems(self, text: str) -> list[str]:
        if not text.strip():
            return ["'message' must not be empty"]
        return super().text_problems(text)

    def build_request(self, *, account: "Account", spec: PostSpec) -> PlatformRequest:
        body = json.dumps({"text": spec.text}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = (
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("User-Agent", USER_AGENT),
        )
        return PlatformRequest(method="POST", url=f"{self.base_url(account)}/2/tweets", headers=headers, body=body)

    def publish(
        self,
        *,
        account: "Account",
        credentials: dict[str, str],
        request: PlatformRequest,
        spec: PostSpec,
        attempt: "Attempt",
    ) -> Published:
        where = f"X ({origin(request.url)})"
        answer = self._as_account(
            account,
            credentials,
            rest_timeouts(attempt),
            lambda authorization: rest_publish(
                request=request, authorization=authorization, attempt=attempt, where=where
            ),
        )
        if answer.status in (200, 201):
            data = (answer.json() or {}).get("data") or {}
            if not data.get("id"):
                raise OutcomeUnknown(f"{where} answered {answer.status} without a post id: {answer.said()}")
            return Published(remote_id=str(data["id"]), remote_url=self.post_url(credentials, str(data["id"])))
        raise self._refusal(account, answer, where, doing="post")

    def find_published(
        self, *, account: "Account", credentials: dict[str, str], spec: PostSpec, attempt: "Attempt"
    ) -> Published | None:
        """The account's posts since the action was created, searched for the exact text; OutcomeUnknown if unread."""
        base = self.base_url(account)
        where = f"X ({origin(base)})"
        timeouts = rest_timeouts(attempt)
        try:
            user_id = credentials.get("user_id") or self._me(account, base, credentials, timeouts)["id"]
            query = urlencode(
                {
                    "max_results": LOOKUP_MAX_RESULTS,
                    "start_time": _utc_seconds(spec),
                    "tweet.fields": "created_at,entities",
                }
            )
            answer = self._send_as(
                account, credentials, "GET", f"{base}/2/users/{quote(str(user_id), safe='')}/tweets?{query}", timeouts
            )
        # A failed refresh too: raised as it is, a TransientAdapterError would retry, and post again.
        except (RequestNotSent, AnswerLost, _Refused, AdapterError) as exc:
            raise OutcomeUnknown(f"the post's answer was lost and looking it up failed: {where}: {exc}") from None
        if answer.status != 200:
            raise OutcomeUnknown(
                f"the post's answer was lost and looking it up failed: {where} answered {answer.status}: "
                + answer.said()
            )
        wanted = x_text_normalized(spec.text)
        for tweet in (answer.json() or {}).get("data") or []:
            if isinstance(tweet, dict) and x_text_normalized(x_post_text(tweet)) == wanted:
                return Published(remote_id=str(tweet["id"]), remote_url=self.post_url(credentials, str(tweet["id"])))
        return None

    def retract(self, *, account: "Account", credentials: dict[str, str], remote_id: str, timeout: float) -> None:
        base = self.base_url(account)
        where = f"X ({origin(base)})"
        timeouts = (min(timeout, 5.0), timeout)
        try:
            answer = self._send_as(
                account, credentials, "DELETE", f"{base}/2/tweets/{quote(remote_id, safe='')}", timeouts
            )
        except RequestNotSent as exc:
            raise TransientAdapterError(f"{where}: could not connect ({exc}); nothing was deleted") from None
        except AnswerLost as exc:
            raise TransientAdapterError(f"{where}: {exc}; the post may or may not be deleted, try again") from None
        if answer.status == 200:
            if (answer.json() or {}).get("data", {}).get("deleted") is True:
                return
            raise PermanentAdapterError(f"{where} did not delete post {remote_id}: {answer.said()}")
        if answer.status == 404:
            return  # already gone: deleting it again has nothing to do
        raise self._refusal(account, answer, where, doing="delete")

    def verify(self, *, account: "Account", credentials: dict[str, str], timeout: float) -> Identity:
        base = self.base_url(account)
        try:
            me = self._me(account, base, credentials, (min(timeout, 5.0), timeout))
        except RequestNotSent as exc:
            raise AccountCheckFailed(f"Could not reach X at {origin(base)} ({exc}): check the base URL.") from None
        except AnswerLost as exc:
            raise AccountCheckFailed(f"X at {origin(base)} did not answer ({exc}); try again.") from None
        except (_Refused, AdapterError) as exc:  # AdapterError: the token refresh failed
            raise AccountCheckFailed(str(exc)) from None
        username = str(me.get("username") or "")
        stored = credentials.get("username")
        if stored and stored.lower() != username.lower():
            raise AccountCheckFailed(
                f"The credentials' username {stored!r} is not the token's user (@{username}); "
                f"set username to {username!r}."
            )
        if credentials.get("user_id") and credentials["user_id"] != str(me.get("id")):
            raise AccountCheckFailed(
                f"The credentials' user_id is not the token's user (@{username}, id {me.get('id')}); set user_id to it."
            )
        return Identity(handle=f"@{username}", remote_id=str(me.get("id") or ""), url=f"https://x.com/{username}")

    @staticmethod
    def post_url(credentials: dict[str, str], post_id: str) -> str:
        username = credentials.get("username", "").lstrip("@")
        return f"https://x.com/{username}/status/{post_id}" if username else f"https://x.com/i/web/status/{post_id}"

    def _me(
        self, account: "Account", base: str, credentials: dict[str, str], timeouts: tuple[float, float]
    ) -> dict[str, Any]:
        answer = self._send_as(account, credentials, "GET", f"{base}/2/users/me", timeouts)
        data = (answer.json() or {}).get("data") if answer.status == 200 else None
        if not isinstance(data, dict) or not data.get("id"):
            raise _Refused(_advice(answer, f"X ({origin(base)})", doing="read who the token is"))
        return data

    def _send_as(
        self, account: "Account", credentials: dict[str, str], method: str, url: str, timeouts: tuple[float, float]
    ) -> Answer:
        """A bodiless ``method`` to ``url`` as the account (its token renewed as ``_as_account`` says)."""
        return self._as_account(
            account,
            credentials,
            timeouts,
            lambda authorization: rest_send(
                method=method,
                url=url,
                headers={"Authorization": authorization, "User-Agent": USER_AGENT},
                timeouts=timeouts,
            ),
        )

    def _as_account(
        self,
        account: "Account",
        credentials: dict[str, str],
        timeouts: tuple[float, float],
        send: Callable[[str], Answer],
    ) -> Answer:
        """``send(authorization)`` as the account: the token renewed first when it is about to expire, and once
        on a 401 (X did nothing, so sending the same request again is safe)."""
        refreshed = False
        if _refreshable(credentials) and _expiring(credentials):
            self._refresh(account, credentials, timeouts)
            refreshed = True
        answer = send(_bearer(credentials))
        if answer.status == 401 and _refreshable(credentials) and not refreshed:
            self._refresh(account, credentials, timeouts)
            answer = send(_bearer(credentials))
        return answer

    def _refresh(self, account: "Account", credentials: dict[str, str], timeouts: tuple[float, float]) -> None:
        """Renew the access token with the refresh token, store both, and put them in ``credentials``."""
        from orchestration.services.accounts import account_credentials_renew  # services import the platforms

        url = f"{self.base_url(account)}{TOKEN_PATH}"
        connect, read = timeouts
        limits = (min(connect, REFRESH_CONNECT_TIMEOUT_SECONDS), min(read, REFRESH_READ_TIMEOUT_SECONDS))
        try:
            renewed = account_credentials_renew(
                account=account,
                used=credentials,
                renew=lambda stored: x_token_refresh(account=account, url=url, credentials=stored, timeouts=limits),
                actor=REFRESH_ACTOR,
                reason="X access token refreshed",
            )
        except (InvalidAccount, CredentialsUnavailable) as exc:
            raise PermanentAdapterError(str(exc)) from None
        credentials.clear()
        credentials.update(renewed)

    def _refusal(self, account: "Account", answer: Answer, where: str, *, doing: str) -> Exception:
        """The error for an answer that is not a success (nothing was posted or deleted)."""
        if answer.status == 429:
            wait = _reset_seconds(answer)
            limit = answer.headers.get("x-rate-limit-limit", "?")
            return AccountRateLimited(
                f"{where} rate-limited account {account.name!r} (429; limit {limit}, resets in {wait:g}s); "
                "nothing was posted",
                retry_after_seconds=wait,
                account=account.name,
            )
        if 500 <= answer.status < 600:
            return TransientAdapterError(f"{where} answered {answer.status} {answer.reason}: {answer.said()}")
        return PermanentAdapterError(_advice(answer, where, doing=doing))


class _Refused(Exception):
    """X answered a who-am-I call with an error (the message says which and what to do)."""


def _bearer(credentials: dict[str, str]) -> str:
    token = credentials.get("access_token", "")
    if not token:
        raise PermanentAdapterError("the account's credentials have no access_token; " + TOKEN_HELP)
    return f"Bearer {token}"


def _refreshable(credentials: dict[str, str]) -> bool:
    return bool(credentials.get("refresh_token") and credentials.get("client_id"))


def _expiring(credentials: dict[str, str]) -> bool:
    """``expires_at`` (unix seconds) is within REFRESH_MARGIN_SECONDS; False when unknown or unreadable."""
    try:
        expires_at = float(credentials.get("expires_at", ""))
    except ValueError:
        return False
    return expires_at - time.time() < REFRESH_MARGIN_SECONDS


def x_token_refresh(
    *, account: "Account", url: str, credentials: dict[str, str], timeouts: tuple[float, float]
) -> dict[str, str | None]:
    """One refresh_token grant at X's token endpoint: the credential fields to change (None: drop).

    PermanentAdapterError when X refuses it (400/401: re-authorize), TransientAdapterError when X
    cannot be reached, fails (5xx) or does not answer. No message quotes a token or the client secret.
    """
    where = f"X ({origin(url)})"
    secret = credentials.get("client_secret", "")
    statuses: list[int] = []

    def status_seen(response: httpx2.Response) -> httpx2.Response:
        statuses.append(response.status_code)
        return response

    client = OAuth2Client(
        client_id=credentials["client_id"],
        client_secret=secret or None,
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        timeout=httpx2.Timeout(timeouts[1], connect=timeouts[0]),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )
    client.register_compliance_hook("refresh_token_response", status_seen)
    reauthorize = f"The refresh token is expired, revoked or already used: {TOKEN_HELP}"
    try:
        with client:
            token = client.refresh_token(url, refresh_token=credentials["refresh_token"])
    except OAuthError as exc:
        status = statuses[-1] if statuses else 400
        said = _scrub(f"{exc.error}: {exc.description or ''}".strip(": "), credentials)
        message = f"{where} refused to refresh account {account.name!r}'s access token: {status} {said}"
        if status == 429 or status >= 500:
            raise TransientAdapterError(f"{message}; try again later") from None
        raise PermanentAdapterError(f"{message}. {reauthorize}") from None
    except httpx2.HTTPStatusError as exc:
        status = exc.response.status_code
        message = f"{where} refused to refresh account {account.name!r}'s access token: {status}"
        if status == 429 or status >= 500:
            raise TransientAdapterError(f"{message}; try again later") from None
        raise PermanentAdapterError(f"{message}. {reauthorize}") from None
    except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
        raise TransientAdapterError(
            f"{where}: could not connect to refresh the access token ({type(exc).__name__}); nothing was sent as "
            "the account"
        ) from None
    except (httpx2.HTTPError, ValueError) as exc:
        raise TransientAdapterError(
            f"{where}: the access token refresh got no usable answer ({type(exc).__name__}); nothing was sent as "
            "the account. "
            "If X had rotated the refresh token meanwhile, the next refresh is refused: then " + TOKEN_HELP
        ) from None
    access_token = str(token.get("access_token") or "")
    if not access_token:
        raise TransientAdapterError(f"{where} answered the access token refresh without an access token")
    expires_in = token.get("expires_in")
    changes: dict[str, str | None] = {
        "access_token": access_token,
        "refresh_token": str(token.get("refresh_token") or credentials["refresh_token"]),
        # Without expires_in, the old expiry would renew before every call: drop it (a 401 still renews).
        "expires_at": str(int(time.time() + float(expires_in))) if isinstance(expires_in, int | float) else None,
    }
    return changes


def _scrub(text: str, credentials: dict[str, str]) -> str:
    """``text`` without any secret of ``credentials`` (an error description may echo what was sent)."""
    for field in SECRET_FIELDS:
        value = credentials.get(field, "")
        if len(value) >= 4:
            text = text.replace(value, "<redacted>")
    return text


def _utc_seconds(spec: PostSpec) -> str:
    """The action's creation time, to the second (X's start_time format), in UTC."""
    return spec.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reset_seconds(answer: Answer) -> float:
    """Seconds until x-rate-limit-reset (epoch seconds); a minute when the header is missing or unreadable."""
    raw = answer.headers.get("x-rate-limit-reset", "")
    if raw.strip().isdigit():
        return min(max(float(raw) - time.time(), 1.0), MAX_RATE_LIMIT_SECONDS)
    retry_after = answer.headers.get("retry-after", "")
    return min(float(retry_after), MAX_RATE_LIMIT_SECONDS) if retry_after.strip().isdigit() else 60.0


def _advice(answer: Answer, where: str, *, doing: str) -> str:
    detail = f"{where} refused to {doing}: {answer.status} {answer.reason}"
    said = answer.said()
    if said:
        detail += f": {said}"
    if answer.status == 401:
        return f"{detail}. The access token is expired, revoked or not a user token: {TOKEN_HELP}"
    if answer.status == 403:
        if "duplicate" in said.lower():
            return f"{detail}. X refuses a post with the same text as a recent one; change the text"
        return (
            f"{detail}. The token lacks a scope (posting needs tweet.write, reading users.read and tweet.read) or "
            "the app has no write access (User authentication settings: Read and write); fix the app, then "
            + TOKEN_HELP
        )
    if answer.status == 404:
        return f"{detail}. Check the account's base URL (it should be https://api.x.com)"
    return f"{detail}. Fix the text or the account and enqueue it again"


PLATFORM = XPlatform()
