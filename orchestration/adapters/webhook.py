"""WEBHOOK: POST one signed JSON event to a configured endpoint (PROOF: write the exact request as an artifact).

The payload names an endpoint of AOL_WEBHOOKS (``{"endpoint": "crm", "event": "lead.created",
"data": {…}}``), and optionally the ``account`` (the receiver's tenant, a brand …) the event is for:
it is sent in the body, one account's events are never sent at the same time (AOL_REAL_CONCURRENCY),
and the receiver's 429 with Retry-After holds every event of that account until then, no attempt
counted (AccountRateLimited). The request is built the same way in both modes and depends only on the action:
its URL, its headers but the signature, and its body (``id``, ``event``, ``created_at``, ``data``,
canonical JSON). So the PROOF artifact holds, byte for byte, the request REAL mode sends, an
approval binds those bytes, and a retry sends the same body with the same ``Idempotency-Key``.

The signature is made at sending, as Stripe's is: ``AOL-Signature: t=<unix time>,v1=<hex
HMAC-SHA256 of "<t>.<body>" with the endpoint's secret>``. A receiver recomputes it, compares in
constant time, refuses an old ``t`` (replays) and keeps the ``Idempotency-Key`` of what it stored,
answering a repeat without storing it twice (docs/platforms.md).

Answers: 2xx success (a JSON ``id`` and ``url`` in the answer become the action's remote id and
URL); 408, 429 and 5xx transient (429 and 503 with Retry-After are retried then); other statuses
permanent, with what to check. A connection that cannot be made is transient; one that drops or
times out after the request went out leaves the outcome unknown, and the retry carries the same
Idempotency-Key, so a receiver that deduplicates stores the event once.
"""

import hashlib
import hmac
import http.client
import json
import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orchestration.adapters.artifacts import proof_artifact_ref
from orchestration.adapters.base import ActionAdapter, ActionResult, Attempt, ProofRender, require_fields
from orchestration.adapters.store import artifact_put
from orchestration.conf import WebhookEndpoint, webhook_endpoints, webhook_endpoints_problems, webhook_secret
from orchestration.exceptions import (
    AccountRateLimited,
    InvalidPayload,
    PermanentAdapterError,
    RealRunUnconfigured,
    RetryLater,
    TransientAdapterError,
)

if TYPE_CHECKING:
    from orchestration.models import Action

SIGNATURE_HEADER = "AOL-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "aicmo-aol-webhook/1"
#: How the artifact shows the header made at sending: the signature's value is never written.
SIGNATURE_PLACEHOLDER = "t=<unix time at sending>,v1=<HMAC-SHA256 of '<t>.<body>' with the endpoint's secret>"
MAX_EVENT_CHARS = 200
MAX_ACCOUNT_CHARS = 200
#: The most of an answer read (its id and url are near the top of any sane answer).
MAX_ANSWER_BYTES = 64 * 1024
#: Statuses worth retrying: the receiver timed out, is rate limiting, or failed.
TRANSIENT_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
#: The longest Retry-After honoured (a day); longer ones are cut to it.
MAX_RETRY_AFTER_SECONDS = 86400.0
WEBHOOK_HINT = (
    'configure AOL_WEBHOOKS (a JSON object: name → {"url": <the receiver\'s URL>, "secret_env": "VARIABLE_NAME"}) '
    "and set that variable to the signing secret in the daemon's environment (docs/platforms.md), or keep PROOF "
    "mode on"
)


def webhook_idempotency_key(idempotency_key: str) -> str:
    """The ``Idempotency-Key`` header (and event id) of an action: the same action key, the same value.

    Derived rather than copied, so that any key makes a valid header and the key itself is not sent.
    """
    return "aol-" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """The ``AOL-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class WebhookRequest:
    """The request of one action, as sent (but for the signature, made at sending)."""

    endpoint: WebhookEndpoint
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def url(self) -> str:
        return self.endpoint.url

    def render(self) -> bytes:
        """The PROOF artifact: method, URL, headers (the signature as a placeholder), a blank line, the body."""
        lines = [f"POST {self.url}", *(f"{name}: {value}" for name, value in self.headers)]
        lines.append(f"{SIGNATURE_HEADER}: {SIGNATURE_PLACEHOLDER}")
        return ("\n".join(lines) + "\n\n").encode("utf-8") + self.body

    @property
    def where(self) -> str:
        """The endpoint for messages: its name and origin (a path may hold a token; it is not repeated)."""
        parts = urlsplit(self.url)
        return f"webhook {self.endpoint.name!r} ({parts.scheme}://{parts.netloc})"


class WebhookAdapter(ActionAdapter):
    """Idempotent when its receiver keeps Idempotency-Keys (docs/platforms.md says receivers must)."""

    action_type = "WEBHOOK"
    description = (
        'POST a signed JSON event to an endpoint of AOL_WEBHOOKS. Payload: {"endpoint": "crm", '
        '"event": "lead.created", "data": {…}, "account": "tenant-1"} (data and account optional; one account\'s '
        "events are sent one at a time and wait together on its 429)."
    )
    is_idempotent = True
    supports_real = True
    real_setup_hint = WEBHOOK_HINT

    def validate(self, payload: dict[str, Any]) -> None:
        require_fields(payload, required={"endpoint": str, "event": str}, optional={"data": dict, "account": str})
        account = payload.get("account")
        if account is not None and (
            not account.strip() or len(account) > MAX_ACCOUNT_CHARS or any(ord(ch) < 32 for ch in account)
        ):
            raise InvalidPayload(f"'account' must be one line of 1 to {MAX_ACCOUNT_CHARS} characters.")
        event = payload["event"]
        if len(event) > MAX_EVENT_CHARS or any(ord(ch) < 32 for ch in event):
            raise InvalidPayload(f"'event' must be one line of at most {MAX_EVENT_CHARS} characters.")
        endpoints = webhook_endpoints()
        if payload["endpoint"] not in endpoints:
            known = ", ".join(sorted(endpoints)) or "none: AOL_WEBHOOKS is empty"
            raise InvalidPayload(
                f"'endpoint' {payload['endpoint']!r} is not configured in AOL_WEBHOOKS (known: {known})."
            )

    def exclusive_key(self, payload: dict[str, Any]) -> str | None:
        """One account at one endpoint: its events are sent one at a time, and a 429 holds them all.

        Without an ``account`` events run concurrently (AOL_REAL_CONCURRENCY): the receiver deduplicates
        by Idempotency-Key, and a 429 holds only the event that met it.
        """
        account = payload.get("account")
        return f"webhook:{payload.get('endpoint')}:{account}" if account else None

    def real_problem(self) -> str:
        problems = webhook_endpoints_problems()
        if problems:
            return f"AOL_WEBHOOKS is invalid: {problems[0]}"
        endpoints = webhook_endpoints()
        if not endpoints:
            return f"no endpoint is configured; {WEBHOOK_HINT}."
        missing = sorted({e.secret_env for e in endpoints.values() if not webhook_secret(e)})
        if missing:
            return f"the signing secret variable(s) {', '.join(missing)} are not set in this process's environment."
        return ""

    def build_request(self, action: "Action") -> WebhookRequest:
        """The request for ``action``: the same bytes on every call while AOL_WEBHOOKS names the same URL."""
        endpoint = webhook_endpoints().get(action.payload["endpoint"])
        if endpoint is None:
            raise PermanentAdapterError(
                f"WEBHOOK endpoint {action.payload['endpoint']!r} is no longer configured in AOL_WEBHOOKS; "
                "add it back, or discard the action"
            )
        key = webhook_idempotency_key(action.idempotency_key)
        event = {
            "id": key,
            "event": action.payload["event"],
            "created_at": action.created_at.isoformat(),
            "data": action.payload.get("data") or {},
        }
        if action.payload.get("account"):
            event["account"] = action.payload["account"]
        body = json.dumps(event, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
        headers = (
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("User-Agent", USER_AGENT),
            (IDEMPOTENCY_HEADER, key),
        )
        return WebhookRequest(endpoint=endpoint, headers=headers, body=body)

    def proof_render(self, action: "Action") -> ProofRender:
        """The exact request REAL mode would send (its signature aside), so an approval binds those bytes."""
        ref = proof_artifact_ref(action=action, folder="webhook", suffix=".http")
        return ProofRender(ref=ref, content=self.build_request(action).render())

    def execute_proof(self, action: "Action", *, attempt: Attempt) -> ActionResult:
        render = self.proof_render(action)
        stored = artifact_put(name=render.ref, content=render.content)
        found = "; artifact from an earlier attempt verified, not rewritten" if stored.already_there else ""
        return ActionResult.with_artifact(
            f"PROOF: would POST {action.payload['event']!r} to webhook {action.payload['endpoint']!r}; "
            f"nothing was sent{found}",
            stored,
        )

    def execute_real(self, action: "Action", *, attempt: Attempt) -> ActionResult:
        request = self.build_request(action)
        endpoint = request.endpoint
        secret = webhook_secret(endpoint)
        if not secret:
            raise RealRunUnconfigured(
                f"WEBHOOK endpoint {endpoint.name!r}: its signing secret variable {endpoint.secret_env} is not set "
                "in the daemon's environment; set it and restart the daemon, or keep PROOF mode on"
            )
        attempt.checkpoint()  # asked to stop (or out of time) before sending: send nothing
        connect_timeout, read_timeout = _timeouts(endpoint, attempt)
        headers = dict(request.headers)
        headers[SIGNATURE_HEADER] = webhook_signature(secret=secret, timestamp=str(int(time.time())), body=request.body)
        parts = urlsplit(request.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
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
            except (OSError, http.client.HTTPException) as exc:  # nothing was sent
                raise TransientAdapterError(f"{request.where}: could not connect: {_reason(exc)}") from None
            if connection.sock is not None:
                connection.sock.settimeout(read_timeout)
            try:
                connection.request("POST", path, body=request.body, headers=headers)
                response = connection.getresponse()
                answer = response.read(MAX_ANSWER_BYTES)
            except TimeoutError:
                raise TransientAdapterError(
                    f"{request.where} did not answer within {read_timeout:g}s; outcome unknown, so the retry "
                    f"sends the same {IDEMPOTENCY_HEADER} for the receiver to recognise"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                raise TransientAdapterError(
                    f"{request.where}: the connection failed after the request was sent ({_reason(exc)}); outcome "
                    f"unknown, so the retry sends the same {IDEMPOTENCY_HEADER} for the receiver to recognise"
                ) from None
        finally:
            connection.close()
        return _outcome(request, response, answer, account=action.payload.get("account"))


def _timeouts(endpoint: WebhookEndpoint, attempt: Attempt) -> tuple[float, float]:
    """Connect and read timeouts, cut so that the attempt gives up before the daemon stops waiting for it."""
    connect, read = endpoint.connect_timeout_seconds, endpoint.timeout_seconds
    remaining = attempt.remaining_seconds()
    if remaining is not None:
        # Leave a little of the attempt for recording what happened.
        budget = max(remaining * 0.9, 0.05)
        connect, read = min(connect, budget), min(read, budget)
    return connect, read


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _outcome(
    request: WebhookRequest, response: http.client.HTTPResponse, answer: bytes, *, account: str | None = None
) -> ActionResult:
    status = response.status
    said = " ".join(answer[:300].decode("utf-8", "replace").split())
    detail = f"{request.where} answered {status} {response.reason}" + (f": {said}" if said else "")
    if 200 <= status < 300:
        remote_id, remote_url = _remote(answer, response.getheader("Content-Type") or "")
        return ActionResult(
            message=f"REAL: POSTed {len(request.body)} bytes to {request.where}, answered {status}"
            + (f", id {remote_id}" if remote_id else ""),
            remote_id=remote_id,
            remote_url=remote_url,
        )
    if status in TRANSIENT_STATUSES:
        retry_after = _retry_after_seconds(response.getheader("Retry-After"))
        if retry_after is not None and status == 429 and account:
            # The receiver limits this account: every event of it waits, none counts an attempt.
            raise AccountRateLimited(
                f"{detail} (Retry-After: {retry_after:g}s)", retry_after_seconds=retry_after, account=account
            )
        if retry_after is not None and status in (429, 503):
            raise RetryLater(f"{detail} (Retry-After: {retry_after:g}s)", retry_after_seconds=retry_after)
        raise TransientAdapterError(detail)
    raise PermanentAdapterError(f"{detail}. {_advice(request, status)}")


def _advice(request: WebhookRequest, status: int) -> str:
    endpoint = request.endpoint
    if status in (401, 403):
        return (
            f"The receiver refused the request: check that {endpoint.secret_env} holds the secret the receiver "
            f"verifies {SIGNATURE_HEADER} with, and that the receiver's clock is right"
        )
    if status in (404, 405, 410):
        return f"Check AOL_WEBHOOKS[{endpoint.name!r}]['url']: the receiver has no such endpoint"
    if 300 <= status < 400:
        return f"Redirects are not followed: set AOL_WEBHOOKS[{endpoint.name!r}]['url'] to the final URL"
    return "The receiver refused this event as it stands; fix the payload (or the receiver) and enqueue it again"


def _remote(answer: bytes, content_type: str) -> tuple[str, str]:
    """The ``id`` and ``url`` of a JSON answer, when it has them."""
    if "json" not in content_type.lower():
        return "", ""
    try:
        data = json.loads(answer)
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    raw_id, raw_url = data.get("id"), data.get("url")
    remote_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else ""
    return remote_id, raw_url if isinstance(raw_url, str) else ""


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_SECONDS)
