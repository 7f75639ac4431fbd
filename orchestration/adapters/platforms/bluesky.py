"""Bluesky: a post is an ``app.bsky.feed.post`` record created in the account's repository (AT Protocol).

Through the ``atproto`` SDK (MarshalX), against the account's PDS (``base_url``, default
https://bsky.social, the entryway that serves every account Bluesky hosts). Credentials:
``{"identifier": "<handle>", "app_password": "<app password>"}``; each publish opens a session
with ``com.atproto.server.createSession`` (cached in the process while it is valid, because
Bluesky limits how many sessions an account opens: 30 per 5 minutes) and sends the access JWT as
``Authorization: Bearer``, a header PROOF shows as a placeholder.

**The exact request.** ``build_request`` renders ``POST {pds}/xrpc/com.atproto.repo.createRecord``
with the JSON body the SDK serialises (its models, ``model_dump_json(by_alias, exclude_none)``);
``publish`` sends those very bytes through the SDK's ``invoke_procedure``, so what a person approved
is what goes out. ``repo`` is the account's handle (from its credentials), ``createdAt`` the
action's creation time, so the body depends on the action alone.

**Exactly once.** The record key is a TID (the key type the ``app.bsky.feed.post`` lexicon requires;
a PDS refuses any other key for a validated post) made from the action: its creation time in
microseconds and 10 bits of SHA-256 of its idempotency key as the clock id. Every attempt writes
the same key; before writing, ``publish`` asks ``com.atproto.repo.getRecord`` for it, so a retry
after an unknown outcome (the connection dropped after the PDS stored the post) finds the post and
records SUCCESS with its uri, never a second post. (A PDS answers a create on a taken key with 500:
the repository's MST refuses a second value at one key; the lookup comes first so that never matters.)

**Text.** Bluesky counts 300 graphemes (user-perceived characters: 👍🏽 and 👨‍👩‍👧 are one each;
counted with the ``regex`` module's ``\\X``, full Unicode UAX #29) and at most 3000 bytes of UTF-8.
Links (``https://…`` and bare domains with a known TLD), ``#hashtags`` and ``$CASHTAGS`` become
facets with UTF-8 byte offsets, detected from the text alone by the SDK's port of Bluesky's own
detector. ``@handle`` mentions need the person's DID: ``build_request`` resolves each with
``com.atproto.identity.resolveHandle`` (a DID is permanent, so the same text renders the same
request); a handle that does not resolve stays plain text, as in the Bluesky app; a PDS that cannot
be reached fails the render (transient) rather than dropping the mention silently. If a handle
points at another DID between the approval and the sending, the re-rendered request differs and
the approval gate refuses to send it.

**Answers.** 429 (and its ``RateLimit-Reset``, epoch seconds): AccountRateLimited until then;
401/403 and a refused app password: permanent, saying what to do; 400: permanent with the PDS's
error; 5xx and network failures before sending: transient; a timeout or dropped connection after
sending: OutcomeUnknown (the retry finds the record by its key). Retract: ``deleteRecord``.
"""

import hashlib
import threading
import time
from datetime import UTC
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import regex
from atproto import Client, models
from atproto_client import exceptions as sdk_errors
from atproto_client.models.string_formats import is_valid_handle
from atproto_client.models.utils import get_model_as_json, get_response_model
from atproto_client.request import Request
from atproto_client.utils import detect_facets, detect_mentions
from atproto_core.uri import AtUri

from orchestration.adapters.platforms.base import Identity, Platform, PlatformRequest, PostSpec, Published, TextCount
from orchestration.credentials import account_credentials
from orchestration.exceptions import (
    AccountCheckFailed,
    AccountRateLimited,
    CredentialsUnavailable,
    OutcomeUnknown,
    PermanentAdapterError,
    RealRunUnconfigured,
    TransientAdapterError,
)

if TYPE_CHECKING:
    from orchestration.adapters.base import Attempt
    from orchestration.models import Account

DEFAULT_BASE_URL = "https://bsky.social"
COLLECTION = "app.bsky.feed.post"
MAX_GRAPHEMES = 300
MAX_BYTES = 3000
#: How long a call may take when the attempt sets no shorter limit, in seconds.
TIMEOUT_SECONDS = 30.0
#: Resolving a mention's handle while rendering the request, in seconds.
RESOLVE_TIMEOUT_SECONDS = 10.0
#: A cached session is used for at most this long (Bluesky's access JWTs live about two hours).
SESSION_MAX_AGE_SECONDS = 15 * 60.0
#: Without a usable RateLimit-Reset, how long a 429 defers the account.
DEFAULT_RATE_LIMIT_SECONDS = 60.0
MAX_RATE_LIMIT_SECONDS = 86400.0
APP_PASSWORD_ADVICE = (
    "check the handle, then create a new app password in Bluesky (Settings → Privacy and security → "
    "App passwords) and set it with: manage.py aol_accounts change {name} (credentials "
    '{{"identifier": "<handle>", "app_password": "<app password>"}})'
)
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_GRAPHEME = regex.compile(r"\X")

# Sessions by (PDS, identifier, hash of the app password): (access JWT, when it was made, monotonic).
_sessions: dict[tuple[str, str, str], tuple[str, float]] = {}
_sessions_lock = threading.Lock()


def bluesky_graphemes(text: str) -> int:
    """How many graphemes Bluesky counts in ``text`` (extended grapheme clusters, Unicode UAX #29)."""
    return len(_GRAPHEME.findall(text))


def bluesky_rkey(*, idempotency_key: str, created_at: Any) -> str:
    """The record key of an action's post: a TID from its creation time and its idempotency key.

    A TID is 64 bits (top bit 0, 53 bits of microseconds since the epoch, 10 bits of clock id) in
    base32-sortable, 13 characters. The time makes it sort as Bluesky's own keys do; the clock id,
    from the idempotency key, keeps two actions created in the same microsecond apart (mostly).
    """
    micros = int(created_at.timestamp() * 1_000_000) & ((1 << 53) - 1)
    clock_id = int.from_bytes(hashlib.sha256(idempotency_key.encode("utf-8")).digest()[:2], "big") >> 6
    number = (micros << 10) | clock_id
    chars = []
    for _ in range(13):
        chars.append(_TID_ALPHABET[number & 31])
        number >>= 5
    return "".join(reversed(chars))


def bluesky_created_at(created_at: Any) -> str:
    """``createdAt`` as Bluesky writes it: UTC, milliseconds, a ``Z``."""
    return created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def bluesky_facets(text: str, *, resolve: Any = None) -> list[models.AppBskyRichtextFacet.Main]:
    """The facets of ``text``, sorted by position: links, tags and cashtags, and the mentions ``resolve`` found.

    ``resolve(handle)`` returns the handle's DID or None (then the mention stays plain text).
    """
    facets = list(detect_facets(text))
    if resolve is not None:
        for mention in detect_mentions(text):
            did = resolve(mention.handle)
            if did:
                facets.append(
                    models.AppBskyRichtextFacet.Main(
                        features=[models.AppBskyRichtextFacet.Mention(did=did)],
                        index=models.AppBskyRichtextFacet.ByteSlice(
                            byte_start=mention.byte_start, byte_end=mention.byte_end
                        ),
                    )
                )
    return sorted(facets, key=lambda facet: facet.index.byte_start)


class BlueskyPlatform(Platform):
    name = "bluesky"
    label = "Bluesky"
    max_chars = MAX_GRAPHEMES
    is_idempotent = True
    can_retract = True
    credential_fields: ClassVar[tuple[str, ...]] = ("identifier", "app_password")
    default_base_url = DEFAULT_BASE_URL

    # --- text -------------------------------------------------------------------------------

    def text_count(self, text: str) -> TextCount:
        return TextCount(count=bluesky_graphemes(text), limit=MAX_GRAPHEMES, unit="graphemes")

    def text_problems(self, text: str) -> list[str]:
        problems = super().text_problems(text)
        size = len(text.encode("utf-8"))
        if size > MAX_BYTES:
            problems.append(f"'message' is {size} bytes of UTF-8; Bluesky allows at most {MAX_BYTES}")
        return problems

    # --- the request ------------------------------------------------------------------------

    def build_request(self, *, account: "Account", spec: PostSpec) -> PlatformRequest:
        handle = self._handle(account)
        base = self.base_url(account)
        facets = bluesky_facets(spec.text, resolve=lambda h: self._resolve_handle(base, h))
        record = models.AppBskyFeedPost.Record(
            text=spec.text, created_at=bluesky_created_at(spec.created_at), facets=facets or None
        )
        data = models.ComAtprotoRepoCreateRecord.Data(
            repo=handle,
            collection=COLLECTION,
            rkey=bluesky_rkey(idempotency_key=spec.idempotency_key, created_at=spec.created_at),
            record=record,
        )
        body = get_model_as_json(data).encode("utf-8")  # what the SDK sends for these models
        return PlatformRequest(
            method="POST",
            url=f"{base}/xrpc/com.atproto.repo.createRecord",
            headers=(("Content-Type", "application/json"),),
            body=body,
        )

    # --- REAL -------------------------------------------------------------------------------

    def publish(
        self,
        *,
        account: "Account",
        credentials: dict[str, str],
        request: PlatformRequest,
        spec: PostSpec,
        attempt: "Attempt",
    ) -> Published:
        handle = self._handle(account, credentials)
        with self._client(account, _timeout(attempt)) as client:
            return self._publish(client, account, credentials, request, spec, attempt, handle)

    def _publish(
        self,
        client: Client,
        account: "Account",
        credentials: dict[str, str],
        request: PlatformRequest,
        spec: PostSpec,
        attempt: "Attempt",
        handle: str,
    ) -> Published:
        rkey = bluesky_rkey(idempotency_key=spec.idempotency_key, created_at=spec.created_at)
        where = self._where(account)
        auth = self._session(client, account, credentials)
        # A post with this key may be there already: an earlier attempt stored it and its answer was lost.
        found = self._find(client, account, auth, handle, rkey, spec.text)
        if found is not None:
            return Published(remote_id=found, remote_url=_post_url(handle, rkey))
        attempt.checkpoint()
        try:
            response = client.invoke_procedure(
                "com.atproto.repo.createRecord",
                input_encoding="application/json",
                output_encoding="application/json",
                content=request.body,
                headers={"Authorization": auth},
            )
        except sdk_errors.RequestErrorBase as exc:
            if exc.response is None:
                raise _unknown_or_transient(exc, where) from None
            if _error_name(exc) in ("ExpiredToken", "InvalidToken"):
                _session_forget(_session_key(account, credentials, self.base_url(account)))
                raise TransientAdapterError(f"{where}: the session expired ({_said(exc)}); retrying") from None
            raise _answer_error(exc, account, where, "createRecord") from None
        except httpx.HTTPError as exc:
            raise _unknown_or_transient(exc, where) from None
        created = get_response_model(response, models.ComAtprotoRepoCreateRecord.Response)
        return Published(remote_id=created.uri, remote_url=_post_url(handle, rkey))

    def retract(self, *, account: "Account", credentials: dict[str, str], remote_id: str, timeout: float) -> None:
        try:
            uri = AtUri.from_str(remote_id)
        except Exception:  # noqa: BLE001  (the SDK raises several kinds for a malformed URI)
            raise PermanentAdapterError(f"{remote_id!r} is not the at:// URI of a Bluesky post") from None
        if uri.collection != COLLECTION or not uri.rkey:
            raise PermanentAdapterError(f"{remote_id!r} is not the at:// URI of a Bluesky post")
        with self._client(account, timeout) as client:
            self._delete(client, account, credentials, uri)

    def _delete(self, client: Client, account: "Account", credentials: dict[str, str], uri: AtUri) -> None:
        where = self._where(account)
        auth = self._session(client, account, credentials)
        data = models.ComAtprotoRepoDeleteRecord.Data(repo=uri.host, collection=COLLECTION, rkey=uri.rkey)
        try:
            # The PDS answers a delete of a record that is not there with success: retracting twice is harmless.
            client.com.atproto.repo.delete_record(data, headers={"Authorization": auth})
        except sdk_errors.RequestErrorBase as exc:
            if exc.response is None:
                raise TransientAdapterError(f"{where}: deleteRecord failed: {_reason(exc)}") from None
            raise _answer_error(exc, account, where, "deleteRecord") from None
        except httpx.HTTPError as exc:
            raise TransientAdapterError(f"{where}: deleteRecord failed: {_reason(exc)}") from None

    def verify(self, *, account: "Account", credentials: dict[str, str], timeout: float) -> Identity:
        identifier, password = credentials.get("identifier", ""), credentials.get("app_password", "")
        if not identifier or not password:
            raise AccountCheckFailed(
                f"Account {account.name!r} needs the credentials "
                '{"identifier": "<handle>", "app_password": "<app password>"}.'
            )
        with self._client(account, timeout) as client:
            return self._whoami(client, account, identifier, password)

    def _whoami(self, client: Client, account: "Account", identifier: str, password: str) -> Identity:
        base = self.base_url(account)
        try:
            session = client.com.atproto.server.create_session(
                models.ComAtprotoServerCreateSession.Data(identifier=identifier, password=password)
            )
            me = client.com.atproto.server.get_session(headers={"Authorization": f"Bearer {session.access_jwt}"})
        except sdk_errors.RequestErrorBase as exc:
            raise AccountCheckFailed(_verify_problem(exc, account, base)) from None
        except httpx.HTTPError as exc:
            raise AccountCheckFailed(f"Could not reach {base}: {_reason(exc)}. Check the account's base URL.") from None
        except sdk_errors.ModelError:
            raise AccountCheckFailed(
                f"{base} did not answer as an AT Protocol PDS (no session in its answer): check the account's "
                f"base URL ({DEFAULT_BASE_URL} for accounts Bluesky hosts)."
            ) from None
        return Identity(handle=me.handle, remote_id=me.did, url=f"https://bsky.app/profile/{me.handle}")

    # --- helpers ----------------------------------------------------------------------------

    def _handle(self, account: "Account", credentials: dict[str, str] | None = None) -> str:
        """The repository the account writes to: its handle (or DID), from its credentials."""
        if credentials is None:
            try:
                credentials = account_credentials(account=account)
            except CredentialsUnavailable as exc:
                raise RealRunUnconfigured(str(exc)) from None
        identifier = credentials.get("identifier", "").strip().lstrip("@")
        if not (is_valid_handle(identifier) or identifier.startswith("did:")):
            raise PermanentAdapterError(
                f"account {account.name!r}: its credentials' 'identifier' must be the account's handle (e.g. "
                "brand.bsky.social) or DID, not an e-mail address; set it with aol_accounts change"
            )
        return identifier

    def _where(self, account: "Account") -> str:
        return f"Bluesky ({self.base_url(account)}) as {account.name}"

    def _client(self, account: "Account", timeout: float) -> "_Connection":
        return _Connection(self.base_url(account), timeout)

    def _resolve_handle(self, base: str, handle: str) -> str | None:
        try:
            with _Connection(base, RESOLVE_TIMEOUT_SECONDS) as client:
                answer = client.com.atproto.identity.resolve_handle(
                    models.ComAtprotoIdentityResolveHandle.Params(handle=handle)
                )
        except sdk_errors.BadRequestError:
            return None  # no such handle: the mention stays plain text
        except (sdk_errors.AtProtocolError, httpx.HTTPError) as exc:
            raise TransientAdapterError(
                f"Bluesky ({base}): could not resolve the mention @{handle} to render the post ({_reason(exc)})"
            ) from None
        return answer.did

    def _session(self, client: Client, account: "Account", credentials: dict[str, str]) -> str:
        """``Bearer <access JWT>`` of a session of the account: a cached one, or a new one."""
        key = _session_key(account, credentials, self.base_url(account))
        with _sessions_lock:
            cached = _sessions.get(key)
        if cached is not None and time.monotonic() - cached[1] < SESSION_MAX_AGE_SECONDS:
            return f"Bearer {cached[0]}"
        where = self._where(account)
        identifier, password = credentials.get("identifier", ""), credentials.get("app_password", "")
        if not identifier or not password:
            raise PermanentAdapterError(
                f"account {account.name!r} has no 'identifier' and 'app_password' in its credentials; "
                + APP_PASSWORD_ADVICE.format(name=account.name)
            )
        try:
            session = client.com.atproto.server.create_session(
                models.ComAtprotoServerCreateSession.Data(identifier=identifier, password=password)
            )
        except sdk_errors.RequestErrorBase as exc:
            if exc.response is None:
                raise TransientAdapterError(f"{where}: could not open a session: {_reason(exc)}") from None
            raise _answer_error(exc, account, where, "createSession") from None
        except httpx.HTTPError as exc:
            raise TransientAdapterError(f"{where}: could not open a session: {_reason(exc)}") from None
        with _sessions_lock:
            _sessions[key] = (session.access_jwt, time.monotonic())
        return f"Bearer {session.access_jwt}"

    def _find(self, client: Client, account: "Account", auth: str, handle: str, rkey: str, text: str) -> str | None:
        """The at:// URI of the account's post with key ``rkey``, or None when there is none.

        A post under that key with another text is not this action's (two actions made in the same
        microsecond whose keys share 10 bits of hash): refused rather than taken for ours.
        """
        where = self._where(account)
        try:
            answer = client.com.atproto.repo.get_record(
                models.ComAtprotoRepoGetRecord.Params(repo=handle, collection=COLLECTION, rkey=rkey),
                headers={"Authorization": auth},
            )
        except sdk_errors.BadRequestError as exc:
            # The PDS: 400 RecordNotFound "Could not locate record: at://…" (getRecord.ts).
            if _error_name(exc) == "RecordNotFound" or "could not locate record" in _said(exc).lower():
                return None
            raise _answer_error(exc, account, where, "getRecord") from None
        except sdk_errors.RequestErrorBase as exc:
            if exc.response is None:
                raise TransientAdapterError(f"{where}: getRecord failed: {_reason(exc)}") from None
            raise _answer_error(exc, account, where, "getRecord") from None
        except httpx.HTTPError as exc:
            raise TransientAdapterError(f"{where}: getRecord failed: {_reason(exc)}") from None
        value = answer.value
        found_text = value.get("text") if isinstance(value, dict) else getattr(value, "text", None)
        if found_text != text:
            raise PermanentAdapterError(
                f"{where}: the record key {rkey} already holds another post ({answer.uri}); enqueue this one again "
                "with another idempotency key"
            )
        return str(answer.uri)


class _Connection:
    """An SDK client over its own HTTP connection pool, closed on leaving the ``with`` block."""

    def __init__(self, base: str, timeout: float) -> None:
        self.client = Client(base_url=base, request=Request(timeout=httpx.Timeout(timeout)))

    def __enter__(self) -> Client:
        return self.client

    def __exit__(self, *exc_info: object) -> None:
        self.client.request.close()


def _session_key(account: "Account", credentials: dict[str, str], base: str) -> tuple[str, str, str]:
    secret = hashlib.sha256(credentials.get("app_password", "").encode("utf-8")).hexdigest()
    return (base, credentials.get("identifier", ""), secret)


def _session_forget(key: tuple[str, str, str]) -> None:
    """Drop a cached session the PDS no longer accepts: the next attempt opens a new one."""
    with _sessions_lock:
        _sessions.pop(key, None)


def _timeout(attempt: "Attempt") -> float:
    """The per-call timeout, cut so the attempt gives up before the daemon stops waiting for it."""
    remaining = attempt.remaining_seconds()
    if remaining is None:
        return TIMEOUT_SECONDS
    return min(TIMEOUT_SECONDS, max(remaining * 0.9, 0.05))


def _post_url(handle: str, rkey: str) -> str:
    return f"https://bsky.app/profile/{handle}/post/{rkey}"


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    shown = cause if isinstance(exc, sdk_errors.RequestErrorBase) and cause is not None else exc
    text = str(shown)
    return f"{type(shown).__name__}: {text}" if text else type(shown).__name__


def _error_name(exc: sdk_errors.RequestErrorBase) -> str:
    content = exc.response.content if exc.response is not None else None
    return str(getattr(content, "error", "") or "")


def _said(exc: sdk_errors.RequestErrorBase) -> str:
    """The PDS's error as ``Name: message`` (both from its XRPC error body), or the status."""
    response = exc.response
    if response is None:
        return _reason(exc)
    content = response.content
    name, message = getattr(content, "error", None), getattr(content, "message", None)
    parts = [str(part) for part in (name, message) if part]
    return ": ".join(parts)[:300] if parts else f"HTTP {response.status_code}"


def _unknown_or_transient(exc: BaseException, where: str) -> TransientAdapterError:
    """A failure with no answer: nothing sent when the connection was never made, else an unknown outcome."""
    cause = exc.__cause__ if isinstance(exc, sdk_errors.RequestErrorBase) else exc
    if isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout):
        return TransientAdapterError(f"{where}: could not connect: {_reason(exc)}")
    return OutcomeUnknown(
        f"{where}: no answer to createRecord ({_reason(exc)}); outcome unknown, so the retry looks the post up "
        "by its record key before writing"
    )


def _rate_limit_seconds(headers: dict[str, Any]) -> float:
    """Seconds until the limit resets: ``RateLimit-Reset`` (epoch seconds), else ``Retry-After``, else a minute."""
    reset, retry_after = str(headers.get("ratelimit-reset", "")).strip(), str(headers.get("retry-after", "")).strip()
    if reset.isdigit():
        seconds = float(reset) - time.time()
    elif retry_after.isdigit():
        seconds = float(retry_after)
    else:
        seconds = DEFAULT_RATE_LIMIT_SECONDS
    return min(max(seconds, 1.0), MAX_RATE_LIMIT_SECONDS)


def _answer_error(exc: sdk_errors.RequestErrorBase, account: "Account", where: str, call: str) -> Exception:
    """The exception for an XRPC error answer to ``call``."""
    assert exc.response is not None
    status = exc.response.status_code
    detail = f"{where}: {call} answered {status} ({_said(exc)})"
    if status == 429:
        seconds = _rate_limit_seconds(exc.response.headers)
        return AccountRateLimited(
            f"{detail}; the account's actions wait {seconds:.0f}s, until the limit resets",
            retry_after_seconds=seconds,
            account=account.name,
        )
    if status in (401, 403):
        return PermanentAdapterError(f"{detail}: {APP_PASSWORD_ADVICE.format(name=account.name)}")
    if status == 404:
        return PermanentAdapterError(
            f"{detail}: no XRPC API there; check the account's base URL ({DEFAULT_BASE_URL} for accounts Bluesky hosts)"
        )
    if status >= 500 or status in (408, 409, 502):
        return TransientAdapterError(detail)
    return PermanentAdapterError(f"{detail}: the PDS refused the request as it stands")


def _verify_problem(exc: sdk_errors.RequestErrorBase, account: "Account", base: str) -> str:
    response = exc.response
    if response is None:
        return f"Could not reach {base}: {_reason(exc)}. Check the account's base URL."
    status = response.status_code
    said = _said(exc)
    if status in (401, 403):
        return (
            f"Bluesky ({base}) refused the identifier or app password ({said}): "
            f"{APP_PASSWORD_ADVICE.format(name=account.name)}."
        )
    if status == 404:
        return (
            f"{base} has no AT Protocol API (createSession answered 404): check the account's base URL "
            f"({DEFAULT_BASE_URL} for accounts Bluesky hosts)."
        )
    if status == 429:
        return f"Bluesky ({base}) is rate limiting this account's sign-ins ({said}); try again later."
    return f"Bluesky ({base}) answered {status} ({said}); try again later, or check the account's base URL."
