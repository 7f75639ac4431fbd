"""Mastodon: post a status as a connected account through mastodon-py, pointed at the account's instance.

Why the SDK and how the approved bytes are the sent bytes: ``build_request`` runs mastodon-py's own
``status_post`` over a transport that records the prepared request instead of sending it, so the
PROOF artifact is exactly what the SDK sends (its form-encoded body, its headers, our
``Idempotency-Key``), but for the Authorization header (added at sending, shown as a placeholder).
``publish`` runs ``status_post`` again with the token, and the transport compares the prepared
request with the approved one before anything leaves: one different byte (a changed SDK, a changed
base URL) refuses the attempt instead of posting what nobody approved.

Exactly once: Mastodon keeps an ``Idempotency-Key`` for an hour and answers a repeat with the
status it made the first time, so a retry after a dropped connection or a timeout (an unknown
outcome) cannot post twice. The key is derived from the action's key, so every attempt of one
action carries the same one.

Answers (docs.joinmastodon.org: methods/statuses "Post a new status", api/rate-limits): 200 → the
Status's id and url; 429 → AccountRateLimited until ``X-RateLimit-Reset`` (the account's other posts
wait too); 401 / 403 → permanent, saying whether the token or its scope is wrong; 422 → permanent
(the instance refused the text); 5xx → transient. No answer after the request went out →
OutcomeUnknown (safe to retry: see above).
"""

import hashlib
import re
import time
import unicodedata
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar

import requests
from mastodon import Mastodon, MastodonError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from orchestration.adapters.platforms.base import Identity, Platform, PlatformRequest, PostSpec, Published, TextCount
from orchestration.exceptions import (
    AccountCheckFailed,
    AccountRateLimited,
    AdapterError,
    OutcomeUnknown,
    PermanentAdapterError,
    TransientAdapterError,
)

if TYPE_CHECKING:
    from orchestration.adapters.base import Attempt
    from orchestration.models import Account

STATUSES_PATH = "/api/v1/statuses"
VERIFY_PATH = "/api/v1/accounts/verify_credentials"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "aicmo-aol (Mastodon.py)"
#: The session's own headers, fixed so the request does not depend on which compression libraries
#: happen to be installed (requests' defaults do): the approval binds them.
SESSION_HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
#: Every URL counts as this many characters, however long (docs.joinmastodon.org/user/posting/#links).
URL_CHARS = 23
DEFAULT_MAX_CHARS = 500
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 30.0
#: The rate-limit window Mastodon uses for posting when a 429 names no reset (5 minutes).
DEFAULT_RATE_LIMIT_SECONDS = 300.0
MAX_RATE_LIMIT_SECONDS = 86400.0
TOKEN_ADVICE = (
    "create a token in the instance's Preferences → Development → New application with the scopes "
    "write:statuses and read:accounts, then replace the account's credentials (aol_accounts or the admin)"
)

# As Mastodon finds them (twitter-text's URL extraction without protocol-less URLs; Account::MENTION_RE).
_URL = re.compile(r"(?<![\w@/.])https?://[^\s<>\"]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?'\""
_MENTION = re.compile(r"(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@\w+(?:[.-]+\w+)*)?", re.IGNORECASE)


def mastodon_idempotency_key(idempotency_key: str) -> str:
    """The ``Idempotency-Key`` of an action: the same on every attempt, not the action's key itself."""
    return "aol-" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]


def countable_text(text: str) -> str:
    """``text`` as Mastodon measures it: each http(s) URL as 23 characters, ``@user@domain`` as ``@user``."""
    spans: list[tuple[int, int, str]] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_URL_TRAILING)
        if url.endswith(")") and url.count("(") < url.count(")"):
            url = url[:-1]
        spans.append((match.start(), match.start() + len(url), "x" * URL_CHARS))
    for match in _MENTION.finditer(text):
        if not any(start < match.end() and match.start() < end for start, end, _ in spans):
            spans.append((match.start(), match.end(), "@" + match.group(1)))
    out: list[str] = []
    position = 0
    for start, end, replacement in sorted(spans):
        out.extend((text[position:start], replacement))
        position = end
    out.append(text[position:])
    return "".join(out)


def grapheme_count(text: str) -> int:
    """User-perceived characters (Mastodon counts graphemes), close to Unicode's rules for what posts hold:
    combining marks, variation selectors, emoji skin tones and tags, ZWJ sequences, flag pairs, CR LF."""
    count = 0
    previous = ""
    joined = flag_open = False
    for char in text:
        point = ord(char)
        extends = (
            joined
            or unicodedata.category(char) in ("Mn", "Me", "Mc")
            or point == 0x200D
            or 0xFE00 <= point <= 0xFE0F
            or 0x1F3FB <= point <= 0x1F3FF
            or 0xE0020 <= point <= 0xE007F
            or (char == "\n" and previous == "\r")
        )
        if 0x1F1E6 <= point <= 0x1F1FF and not extends:
            extends, flag_open = flag_open, not flag_open
        elif not extends:
            flag_open = False
        joined = point == 0x200D
        previous = char
        if not extends or count == 0:
            count += 1
    return count


class _Captured(Exception):
    """build_request's transport stops the SDK here, with the request it would have sent."""


class _Refused(Exception):
    """publish's transport stops the SDK here: the request differs from the approved one."""


class _Wire(HTTPAdapter):
    """The SDK's transport: records the request (capture), or checks it against the approved one and sends it,
    noting whether a failure came before the request went out (nothing sent) or after (outcome unknown)."""

    def __init__(self, *, capture: bool = False, approved: PlatformRequest | None = None) -> None:
        super().__init__()
        self.capture = capture
        self.approved = approved
        self.captured: requests.PreparedRequest | None = None
        self.mismatch = ""
        self.response: requests.Response | None = None
        self.unsent: BaseException | None = None
        self.unknown: BaseException | None = None
        #: Where the instance redirected the request to (redirects are not followed: see send).
        self.redirect = ""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if self.capture:
            self.captured = request
            raise _Captured()
        if self.response is not None:
            # requests follows a redirect with a second request (a POST turned into a GET): the first one
            # was answered, so stop here and say where the instance points instead.
            self.redirect = str(request.url)
            raise _Refused()
        if self.approved is not None:
            self.mismatch = _difference(self.approved, request)
            if self.mismatch:
                raise _Refused()
        try:
            response = super().send(request, *args, **kwargs)
        except (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.ProxyError) as exc:
            self.unsent = exc
            raise
        except requests.exceptions.ConnectionError as exc:
            cause = exc.args[0] if exc.args else None
            if isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError):
                self.unsent = exc  # refused, or no such host: nothing went out
            else:
                self.unknown = exc  # dropped after the request was written
            raise
        except requests.exceptions.RequestException as exc:  # ReadTimeout and the like
            self.unknown = exc
            raise
        self.response = response
        return response


def _body_bytes(request: requests.PreparedRequest) -> bytes:
    body = request.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes):
        return body
    raise PermanentAdapterError("mastodon-py prepared a streamed body, which cannot be bound to an approval")


def _public_headers(request: requests.PreparedRequest) -> tuple[tuple[str, str], ...]:
    return tuple((name, str(value)) for name, value in request.headers.items() if name.lower() != "authorization")


def _difference(approved: PlatformRequest, sent: requests.PreparedRequest) -> str:
    """What differs between the approved request and the one about to go out ('' when nothing does)."""
    if (sent.method, sent.url) != (approved.method, approved.url):
        return f"{sent.method} {sent.url} instead of {approved.method} {approved.url}"
    if _body_bytes(sent) != approved.body:
        return "the body differs"
    if _public_headers(sent) != approved.headers:
        return "the headers differ"
    if "Authorization" not in sent.headers:
        return "no access token"
    return ""


def _reason(exc: BaseException | None) -> str:
    """A failure's kind, without its text (which may repeat a URL): 'ReadTimeout', 'ConnectionError', …"""
    if exc is None:
        return "no answer"
    cause = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError) and cause.reason is not None:
        return f"{type(exc).__name__}: {type(cause.reason).__name__}"
    if isinstance(cause, BaseException):
        inner = cause.args[1] if len(cause.args) > 1 and isinstance(cause.args[1], BaseException) else cause
        return f"{type(exc).__name__}: {type(inner).__name__}"
    return type(exc).__name__


def _said(response: requests.Response) -> str:
    """Mastodon's own ``error`` text of an answer, one line, short."""
    try:
        data = response.json()
    except ValueError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    return " ".join(str(error).split())[:300] if error else ""


def _rate_limit_seconds(response: requests.Response) -> float:
    """Seconds until the account may post again: X-RateLimit-Reset (against the server's Date), else Retry-After."""
    reset = response.headers.get("X-RateLimit-Reset", "").strip()
    if reset:
        try:
            when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            now = time.time()
            try:
                server_now = parsedate_to_datetime(response.headers.get("Date", "")).timestamp()
            except (TypeError, ValueError):
                server_now = now
            return min(max(when.timestamp() - server_now, 1.0), MAX_RATE_LIMIT_SECONDS)
    retry_after = response.headers.get("Retry-After", "").strip()
    if retry_after.isdigit():
        return min(max(float(retry_after), 1.0), MAX_RATE_LIMIT_SECONDS)
    return DEFAULT_RATE_LIMIT_SECONDS


def _redirect_advice(account: "Account", wire: _Wire) -> str:
    status = wire.response.status_code if wire.response is not None else 0
    origin = "/".join(wire.redirect.split("/", 3)[:3])
    return (
        f"The instance answered {status} pointing to {origin}; redirects are not followed (the request that was "
        f"approved goes to one URL only): set account {account.name!r}'s base URL to the instance's own root"
    )


def _timeouts(attempt: "Attempt | None", cap: float | None = None) -> tuple[float, float]:
    """Connect and read timeouts, cut so the attempt gives up before the daemon stops waiting for it."""
    connect, read = CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS
    if cap is not None:
        connect, read = min(connect, cap), min(read, cap)
    remaining = attempt.remaining_seconds() if attempt is not None else None
    if remaining is not None:
        budget = max(remaining * 0.9, 0.05)
        connect, read = min(connect, budget), min(read, budget)
    return connect, read


class MastodonPlatform(Platform):
    name = "mastodon"
    label = "Mastodon"
    max_chars = DEFAULT_MAX_CHARS
    is_idempotent = True
    can_retract = True
    credential_fields: ClassVar[tuple[str, ...]] = ("access_token",)

    def text_count(self, text: str) -> TextCount:
        return TextCount(count=grapheme_count(countable_text(text)), limit=self.max_chars)

    def text_problems(self, text: str) -> list[str]:
        counted = self.text_count(text)
        if not counted.fits:
            return [
                f"'message' counts {counted.count} characters as Mastodon counts them (a link is 23, a mention "
                f"@user@domain is @user); Mastodon allows at most {counted.limit}"
            ]
        return []

    def _client(self, account: "Account", wire: _Wire, *, token: str = "", timeouts: tuple[float, float]) -> Mastodon:
        session = requests.Session()
        session.headers.clear()
        session.headers.update(SESSION_HEADERS)
        session.mount("http://", wire)
        session.mount("https://", wire)
        client = Mastodon(
            api_base_url=self.base_url(account),
            session=session,
            request_timeout=timeouts,  # type: ignore[arg-type]  # requests takes (connect, read) too
            ratelimit_method="throw",  # a 429 is the queue's to wait out, not a sleep in a worker
            version_check_mode="none",  # no /api/v1/instance round trip before each call
            user_agent=USER_AGENT,
        )
        # Set after construction: the constructor reads a token that names an existing file from that file.
        client.access_token = token or None
        return client

    def build_request(self, *, account: "Account", spec: PostSpec) -> PlatformRequest:
        wire = _Wire(capture=True)
        client = self._client(account, wire, timeouts=_timeouts(None))
        try:
            client.status_post(spec.text, idempotency_key=mastodon_idempotency_key(spec.idempotency_key))
        except MastodonError:
            pass
        if wire.captured is None:
            raise PermanentAdapterError("mastodon-py did not prepare a request for this status")
        return PlatformRequest(
            method=str(wire.captured.method),
            url=str(wire.captured.url),
            headers=_public_headers(wire.captured),
            body=_body_bytes(wire.captured),
        )

    def publish(
        self,
        *,
        account: "Account",
        credentials: dict[str, str],
        request: PlatformRequest,
        spec: PostSpec,
        attempt: "Attempt",
    ) -> Published:
        token = self._token(account, credentials)
        wire = _Wire(approved=request)
        client = self._client(account, wire, token=token, timeouts=_timeouts(attempt))
        try:
            status = client.status_post(spec.text, idempotency_key=mastodon_idempotency_key(spec.idempotency_key))
        except MastodonError:
            raise self._failure(account, wire, doing="posting") from None
        remote_id = str(status.get("id") or "")
        if not remote_id:
            raise PermanentAdapterError(f"{self._where(account)} answered without a status id: not a Mastodon API?")
        return Published(remote_id=remote_id, remote_url=str(status.get("url") or status.get("uri") or ""))

    def retract(self, *, account: "Account", credentials: dict[str, str], remote_id: str, timeout: float) -> None:
        """DELETE the status; one already gone (404) counts as deleted."""
        wire = _Wire()
        client = self._client(account, wire, token=self._token(account, credentials), timeouts=_timeouts(None, timeout))
        try:
            client.status_delete(remote_id)
        except MastodonError:
            if wire.response is not None and wire.response.status_code == 404:
                return
            raise self._failure(account, wire, doing="deleting status " + remote_id) from None

    def verify(self, *, account: "Account", credentials: dict[str, str], timeout: float) -> Identity:
        where = self._where(account)
        token = credentials.get("access_token", "")
        if not token:
            raise AccountCheckFailed(f"Account {account.name!r} has no access_token in its credentials: {TOKEN_ADVICE}")
        wire = _Wire()
        client = self._client(account, wire, token=token, timeouts=_timeouts(None, timeout))
        try:
            me = client.account_verify_credentials()
        except MastodonError:
            raise AccountCheckFailed(self._check_problem(account, wire)) from None
        if not isinstance(me, dict) or not me.get("id") or not me.get("acct"):
            raise AccountCheckFailed(
                f"{where} answered {VERIFY_PATH} without an account: this is not a Mastodon API. Set the account's "
                "base URL to the instance's root, e.g. https://mastodon.social"
            )
        acct = str(me["acct"])
        host = (self.base_url(account).split("://", 1)[-1]).split("/", 1)[0]
        handle = "@" + (acct if "@" in acct else f"{acct}@{host}")
        return Identity(handle=handle, remote_id=str(me["id"]), url=str(me.get("url") or ""))

    # -- what went wrong, in words an operator can act on

    def _where(self, account: "Account") -> str:
        return f"Mastodon at {self.base_url(account)}"

    def _token(self, account: "Account", credentials: dict[str, str]) -> str:
        token = credentials.get("access_token", "")
        if not token:
            raise PermanentAdapterError(
                f"account {account.name!r} has no access_token in its credentials; {TOKEN_ADVICE}"
            )
        return token

    def _failure(self, account: "Account", wire: _Wire, *, doing: str) -> AdapterError:
        where = self._where(account)
        if wire.mismatch:
            return PermanentAdapterError(
                f"nothing was sent: the request mastodon-py would send is not the approved one ({wire.mismatch}); "
                "render the PROOF again and approve what it shows"
            )
        if wire.redirect:
            return PermanentAdapterError(f"{where} redirected {doing} elsewhere. {_redirect_advice(account, wire)}")
        if wire.unsent is not None:
            return TransientAdapterError(f"{where}: could not connect ({_reason(wire.unsent)}); nothing was sent")
        if wire.unknown is not None:
            return OutcomeUnknown(
                f"{where}: no answer after {doing} ({_reason(wire.unknown)}); outcome unknown, so the retry sends the "
                f"same {IDEMPOTENCY_HEADER}, which Mastodon answers with the status it made, if it made one"
            )
        response = wire.response
        if response is None:
            return PermanentAdapterError(f"{where}: mastodon-py refused the request before sending it")
        status = response.status_code
        said = _said(response)
        detail = f"{where} answered {status} to {doing}" + (f": {said}" if said else "")
        if 200 <= status < 300:
            return OutcomeUnknown(f"{detail}, but the answer could not be read as Mastodon's; outcome unknown")
        if status == 429:
            seconds = _rate_limit_seconds(response)
            return AccountRateLimited(
                f"{detail} (rate limited; the account's actions wait {seconds:g}s until X-RateLimit-Reset)",
                retry_after_seconds=seconds,
                account=account.name,
            )
        if status == 401:
            return PermanentAdapterError(
                f"{detail}. The access token of account {account.name!r} was refused (revoked, expired or mistyped): "
                f"{TOKEN_ADVICE}"
            )
        if status == 403:
            return PermanentAdapterError(
                f"{detail}. The token of account {account.name!r} lacks the scope write:statuses (or the account is "
                f"suspended or limited): {TOKEN_ADVICE}"
            )
        if status == 404 and doing == "posting":
            return PermanentAdapterError(
                f"{detail}. There is no Mastodon API at this base URL: set account {account.name!r}'s base URL to the "
                "instance's root, e.g. https://mastodon.social"
            )
        if status >= 500 or status in (408, 425):
            return TransientAdapterError(detail)
        return PermanentAdapterError(f"{detail}. The instance refused it as it stands; fix it and enqueue it again")

    def _check_problem(self, account: "Account", wire: _Wire) -> str:
        """What ``verify`` found wrong: the URL, the token, or its scope."""
        where = self._where(account)
        if wire.redirect:
            return f"{where} redirected the check elsewhere. {_redirect_advice(account, wire)}"
        if wire.unsent is not None:
            return (
                f"Could not reach {where} ({_reason(wire.unsent)}): wrong base URL, or the instance is down. "
                "Set the account's base URL to the instance's root, e.g. https://mastodon.social"
            )
        if wire.unknown is not None:
            return f"{where} did not answer ({_reason(wire.unknown)}); check the base URL or try again later"
        response = wire.response
        if response is None:
            return f"{where}: the check could not be made"
        status = response.status_code
        if status == 401:
            return f"{where} refused the access token (401: revoked, expired or mistyped): {TOKEN_ADVICE}."
        if status == 403:
            return f"{where} says the token lacks the scope read:accounts (403): {TOKEN_ADVICE}."
        speaks_json = "json" in response.headers.get("Content-Type", "").lower()
        if status in (404, 405, 501) or 200 <= status < 300 or (status < 500 and not speaks_json):
            return (
                f"{where} has no Mastodon API ({status} on {VERIFY_PATH}): wrong base URL. Set it to the instance's "
                "root, e.g. https://mastodon.social"
            )
        if status == 429:
            return f"{where} is rate limiting this account (429); try again in {_rate_limit_seconds(response):g}s"
        said = _said(response)
        return (
            f"{where} answered {status}"
            + (f": {said}" if said else "")
            + "; the instance is failing (try again later), or the base URL is not the instance's"
        )
