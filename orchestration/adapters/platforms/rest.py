"""One HTTP exchange with a platform's REST API, telling "never sent" from "sent, but no answer".

X and LinkedIn have no idempotency, so what matters after a failure is whether the request may
have reached the platform: a connection that could not be made sent nothing (safe to retry), one
that timed out or dropped after the request went out may have posted (the caller looks the post up,
or parks the action for a person). The standard library's ``http.client`` sends the body bytes as
given, so what PROOF rendered is what goes out, and its connect and send steps are separate, which
is the distinction above. Nothing here logs; the caller adds the Authorization header and never
puts it in a message.
"""

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orchestration.exceptions import OutcomeUnknown, TransientAdapterError

if TYPE_CHECKING:
    from orchestration.adapters.base import Attempt
    from orchestration.adapters.platforms.base import PlatformRequest

USER_AGENT = "aicmo-aol/1"
#: The most of an answer read: a page of recent posts fits many times over.
MAX_ANSWER_BYTES = 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 20.0


class RequestNotSent(Exception):
    """The connection could not be made: nothing reached the platform."""


class AnswerLost(Exception):
    """The request went out, then the connection timed out or dropped: the platform may have acted on it."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    #: Header names in lower case.
    headers: dict[str, str]
    body: bytes
    #: What to blank out of ``said``: the credentials sent, in case an error body echoes them.
    redact: tuple[str, ...] = ()

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def said(self, limit: int = 300) -> str:
        """The start of the body on one line, for an error message, without the credentials sent."""
        return " ".join(self.scrub(self.body.decode("utf-8", "replace")).split())[:limit]

    def scrub(self, text: str) -> str:
        """``text`` with the credentials sent blanked out."""
        for secret in self.redact:
            text = text.replace(secret, "<redacted>")
        return text


def rest_timeouts(attempt: "Attempt | None") -> tuple[float, float]:
    """Connect and read timeouts, cut so that an attempt gives up before the daemon stops waiting for it."""
    connect, read = CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS
    remaining = attempt.remaining_seconds() if attempt is not None else None
    if remaining is not None:
        budget = max(remaining * 0.9, 0.05)  # leave a little of the attempt for recording what happened
        connect, read = min(connect, budget), min(read, budget)
    return connect, read


def rest_send(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes = b"",
    timeouts: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
) -> Answer:
    """Send one request; RequestNotSent when no connection was made, AnswerLost when no answer came back."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connect_timeout, read_timeout = timeouts
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=connect_timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=connect_timeout)
    try:
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as exc:
            raise RequestNotSent(_reason(exc)) from None
        if connection.sock is not None:
            connection.sock.settimeout(read_timeout)
        try:
            connection.request(method, path, body=body if body or method in ("POST", "PUT") else None, headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_ANSWER_BYTES)
        except TimeoutError:
            raise AnswerLost(f"no answer within {read_timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise AnswerLost(f"the connection failed after the request was sent ({_reason(exc)})") from None
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        authorization = headers.get("Authorization", "")
        redact = tuple(part for part in (authorization, authorization.partition(" ")[2]) if len(part) >= 8)
        return Answer(status=response.status, reason=response.reason, headers=answer_headers, body=data, redact=redact)
    finally:
        connection.close()


def rest_publish(*, request: "PlatformRequest", authorization: str, attempt: "Attempt", where: str) -> Answer:
    """Send a post's approved request once, as the account: TransientAdapterError when it never left (nothing
    was posted), OutcomeUnknown when it left and no answer came (the post may exist)."""
    try:
        return rest_send(
            method=request.method,
            url=request.url,
            headers={**dict(request.headers), "Authorization": authorization},
            body=request.body,
            timeouts=rest_timeouts(attempt),
        )
    except RequestNotSent as exc:
        raise TransientAdapterError(f"{where}: could not connect ({exc}); nothing was posted") from None
    except AnswerLost as exc:
        raise OutcomeUnknown(f"{where}: {exc}; the post may have been made") from None


def origin(url: str) -> str:
    """scheme://host[:port] of ``url``, for messages (a path is not repeated)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
