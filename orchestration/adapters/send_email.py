"""SEND_EMAIL: send one plain-text email (PROOF: write the complete message as an ``.eml`` artifact).

The message is built the same way in both modes, by Django's ``EmailMessage``, with a Date taken
from the action's ``created_at`` and a Message-ID derived from its idempotency key. So the PROOF
artifact holds, byte for byte, what REAL would hand to the SMTP server, a re-run writes the same
bytes, and a retried REAL send carries the same Message-ID (a recipient's mail system, or a person,
can recognise the duplicate).

REAL goes through Django's configured email backend (``EMAIL_*`` settings, read from the
environment in ``aicmo_site/settings.py``). SMTP answers map onto the queue's two kinds of failure:
4xx codes, connection errors and timeouts are transient (retried with backoff); 5xx codes are
permanent (straight to the DLQ).
"""

import hashlib
import smtplib
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.validators import validate_email

from orchestration.adapters.artifacts import proof_artifact_ref, sha256_bytes
from orchestration.adapters.base import ActionAdapter, ActionResult, Attempt, ProofRender, require_fields
from orchestration.adapters.store import artifact_put
from orchestration.exceptions import InvalidPayload, PermanentAdapterError, RealRunUnconfigured, TransientAdapterError

if TYPE_CHECKING:
    from orchestration.models import Action

MAX_RECIPIENTS = 50
MAX_SUBJECT_CHARS = 250
MAX_BODY_CHARS = 50_000
MAX_ADDRESS_CHARS = 254
#: The right-hand side of every Message-ID this adapter makes.
MESSAGE_ID_DOMAIN = "aicmo.aol"

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
DUMMY_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
EMAIL_SETTINGS_HINT = (
    "set EMAIL_HOST (and as needed EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS or "
    "EMAIL_USE_SSL, EMAIL_TIMEOUT, DEFAULT_FROM_EMAIL) for the daemon's environment, or keep PROOF mode on"
)


def message_id_for(idempotency_key: str) -> str:
    """``<sha256-of-key[:32]@aicmo.aol>``: the same key always gives the same Message-ID."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{MESSAGE_ID_DOMAIN}>"


def _check_address(value: str, *, field: str) -> None:
    """A bare address or ``Display Name <address>``, without line breaks."""
    if len(value) > MAX_ADDRESS_CHARS + 100:
        raise InvalidPayload(f"{field} {value[:40]!r}… is too long.")
    if "\r" in value or "\n" in value:
        raise InvalidPayload(f"{field} {value!r} must not contain line breaks.")
    _, address = parseaddr(value)
    try:
        if not address or len(address) > MAX_ADDRESS_CHARS:
            raise ValidationError("invalid")
        validate_email(address)
    except ValidationError:
        raise InvalidPayload(f"{field} {value!r} is not a valid email address.") from None


def recipients_of(payload: dict[str, Any]) -> list[str]:
    to = payload["to"]
    return [to] if isinstance(to, str) else list(to)


def real_email_problem() -> str:
    """Why REAL sending is not configured, or '' when it is."""
    backend = getattr(settings, "EMAIL_BACKEND", SMTP_BACKEND)
    if backend == DUMMY_BACKEND:
        return f"EMAIL_BACKEND is Django's dummy backend, which sends nothing; {EMAIL_SETTINGS_HINT}."
    if backend == SMTP_BACKEND and not getattr(settings, "EMAIL_HOST", ""):
        return f"EMAIL_HOST is not set; {EMAIL_SETTINGS_HINT}."
    return ""


class SendEmailAdapter(ActionAdapter):
    """PROOF runs are always idempotent (the same bytes to the same file); ``is_idempotent``
    describes REAL, where a second send is a second email (recognisable by its Message-ID)."""

    action_type = "SEND_EMAIL"
    description = (
        'Send a plain-text email. Payload: {"to": "ann@example.com" or ["ann@example.com", …], '
        '"subject": "…", "body": "…", "from": "Team <team@example.com>"} (from optional: DEFAULT_FROM_EMAIL).'
    )
    is_idempotent = False
    supports_real = True
    real_setup_hint = EMAIL_SETTINGS_HINT

    def validate(self, payload: dict[str, Any]) -> None:
        problems = []
        to = payload.get("to") if isinstance(payload, dict) else None
        if to is None:
            problems.append("'to' is required")
        elif not isinstance(to, str | list):
            problems.append(f"'to' must be an address or a list of addresses, not {type(to).__name__}")
        try:
            require_fields(payload, required={"subject": str, "body": str}, optional={"to": object, "from": str})
        except InvalidPayload as exc:
            problems.append(str(exc).rstrip("."))
        if problems:
            raise InvalidPayload("; ".join(problems) + ".")
        recipients = recipients_of(payload)
        if not recipients:
            raise InvalidPayload("'to' must name at least one address.")
        if len(recipients) > MAX_RECIPIENTS:
            raise InvalidPayload(f"'to' has {len(recipients)} addresses; the limit is {MAX_RECIPIENTS}.")
        for address in recipients:
            if not isinstance(address, str):
                raise InvalidPayload(f"'to' must hold strings, not {type(address).__name__}.")
            _check_address(address, field="'to' address")
        if len({parseaddr(a)[1].lower() for a in recipients}) != len(recipients):
            raise InvalidPayload("'to' lists the same address more than once.")
        subject = payload["subject"]
        if "\r" in subject or "\n" in subject:
            raise InvalidPayload("'subject' must be one line (no line breaks).")
        if len(subject) > MAX_SUBJECT_CHARS:
            raise InvalidPayload(f"'subject' is {len(subject)} characters; the limit is {MAX_SUBJECT_CHARS}.")
        if len(payload["body"]) > MAX_BODY_CHARS:
            raise InvalidPayload(f"'body' is {len(payload['body'])} characters; the limit is {MAX_BODY_CHARS}.")
        if payload.get("from"):
            _check_address(payload["from"], field="'from'")

    def real_problem(self) -> str:
        return real_email_problem()

    def build_message(self, action: "Action", *, connection: BaseEmailBackend | None = None) -> EmailMessage:
        """The message for ``action``: the same headers and bytes on every call."""
        payload = action.payload
        return EmailMessage(
            subject=payload["subject"],
            body=payload["body"],
            from_email=payload.get("from") or settings.DEFAULT_FROM_EMAIL,
            to=recipients_of(payload),
            headers={
                "Message-ID": message_id_for(action.idempotency_key),
                "Date": format_datetime(action.created_at),
            },
            connection=connection,
        )

    @staticmethod
    def message_bytes(message: EmailMessage) -> bytes:
        """The RFC 5322 message as the SMTP backend sends it (CRLF line endings)."""
        # message() is Django's SafeMIME class, whose as_bytes takes linesep; the stubs type it as email's Message.
        return message.message().as_bytes(linesep="\r\n")  # type: ignore[call-arg]

    def proof_render(self, action: "Action") -> ProofRender:
        """The exact message REAL mode would send: deterministic per action (Date from created_at,
        Message-ID from the key), so the approval gate can bind a REAL send to an approved hash."""
        ref = proof_artifact_ref(action=action, folder="send_email", suffix=".eml")
        return ProofRender(ref=ref, content=self.message_bytes(self.build_message(action)))

    # ``attempt`` is the daemon's Attempt (deadline, stop request) where the adapter base passes one.
    def execute_proof(self, action: "Action", *, attempt: Attempt | None = None) -> ActionResult:
        render = self.proof_render(action)
        stored = artifact_put(name=render.ref, content=render.content)
        message = self.build_message(action)
        return ActionResult.with_artifact(
            f"PROOF: would send {len(message.to)} recipient(s) {message.extra_headers['Message-ID']}; nothing was sent",
            stored,
        )

    def execute_real(self, action: "Action", *, attempt: Attempt | None = None) -> ActionResult:
        problem = real_email_problem()
        if problem:
            raise RealRunUnconfigured(f"{self.action_type} cannot run in REAL mode: {problem}")
        options: dict[str, Any] = {}
        remaining = attempt.remaining_seconds() if attempt is not None else None
        if remaining is not None and settings.EMAIL_TIMEOUT:
            # Let the SMTP conversation give up before the daemon stops waiting for this attempt.
            options["timeout"] = max(1.0, min(float(settings.EMAIL_TIMEOUT), remaining))
        if attempt is not None:
            attempt.checkpoint()  # asked to stop (or out of time) before sending: send nothing
        try:
            connection = get_connection(fail_silently=False, **options)
        except (ValueError, ImportError, TypeError) as exc:  # e.g. EMAIL_USE_TLS and EMAIL_USE_SSL both on
            raise RealRunUnconfigured(f"{self.action_type}: the email backend cannot be set up: {exc}") from None
        message = self.build_message(action, connection=connection)
        digest = sha256_bytes(self.message_bytes(message))
        where = _server_label()
        try:
            sent = message.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in exc.recipients.items())
            error_class = TransientAdapterError if all(400 <= c < 500 for c in codes) else PermanentAdapterError
            raise error_class(f"{where} refused every recipient: {detail}") from None
        except smtplib.SMTPResponseException as exc:
            error_class = PermanentAdapterError if 500 <= exc.smtp_code < 600 else TransientAdapterError
            raise error_class(f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, refused connections, timeouts, TLS
            raise TransientAdapterError(f"{where}: {type(exc).__name__}: {exc or 'no detail'}") from None
        if sent != 1:
            raise TransientAdapterError(f"{where}: the email backend reported {sent} messages sent")
        return ActionResult(
            message=f"REAL: sent to {len(message.to)} recipient(s) via {where}, "
            f"Message-ID {message.extra_headers['Message-ID']}",
            artifact_sha256=digest,
            remote_id=message.extra_headers["Message-ID"],
        )


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:300]


def _server_label() -> str:
    backend = getattr(settings, "EMAIL_BACKEND", SMTP_BACKEND)
    if backend == SMTP_BACKEND:
        return f"SMTP server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    return f"email backend {backend.rsplit('.', 2)[-2]}"
