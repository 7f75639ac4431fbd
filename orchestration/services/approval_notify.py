"""Telling approvers that actions wait for them: email to the people who may approve, and an optional signed webhook.

The outbox is the action row itself: an AWAITING_APPROVAL action whose ``approval_notified_at`` is
empty has not been announced. The daemon holding the lease runs ``approval_notify_pending`` after
its ticks, on a thread of its own (``orchestration/daemon/loop.py``), never inside the fenced
transaction that parks the action: a slow or broken mail server delays nobody's approval gate, and
a failure is logged, never raised into the queue.

At most one message per action: the actions are marked notified (one guarded UPDATE) *before*
anything is sent, so a daemon restarted mid-send never announces them again; a failed send is
recorded in each action's execution log (the console's approvals list still shows them). When more
than AOL_APPROVAL_DIGEST_THRESHOLD actions start waiting at once, one digest lists them all.

Recipients: active users with an email address who hold ``approve_action`` directly, through a
group, or as superusers. The messages say what would be sent (the post's text, the email's
subject and recipients) and link to the console's approval page (AOL_CONSOLE_URL); they hold no
credential: payloads name connected accounts, never their secrets.
"""

import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Q
from django.urls import NoReverseMatch, reverse

from orchestration import permissions
from orchestration.adapters.send_email import real_email_problem
from orchestration.adapters.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, webhook_signature
from orchestration.conf import aol
from orchestration.dbclock import DbNow
from orchestration.models import Action, ActionStatus, LogLevel
from orchestration.services.logs import log_entry, log_write_many

logger = logging.getLogger("orchestration")

#: The most actions one pass announces (the rest wait for the next pass, still unannounced).
NOTIFY_BATCH = 200
#: How long the webhook may take to answer.
WEBHOOK_TIMEOUT_SECONDS = 5.0
#: The most of a message's text (or an email's body) a notification quotes.
MAX_QUOTED_CHARS = 1000
USER_AGENT = "aicmo-aol-approvals/1"


@dataclass(frozen=True)
class Waiting:
    """One action as a notification describes it."""

    action_id: int
    action_type: str
    summary: str  # what would be sent, in a few lines
    url: str  # its approval page
    sha256: str


@dataclass
class NotifyReport:
    announced: list[int] = field(default_factory=list)
    emails: int = 0  # messages handed to the mail server
    webhook: bool = False  # the webhook answered 2xx
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"email to {self.emails} approver message(s)"]
        if self.webhook:
            parts.append("webhook delivered")
        return ", ".join(parts) + (f"; problems: {'; '.join(self.problems)}" if self.problems else "")


def approval_console_link(*, action_id: int | None = None) -> str:
    """The console's approval page of ``action_id`` (or the approvals list), absolute when AOL_CONSOLE_URL is set."""
    try:
        path = reverse("orchestration:approval", args=[action_id]) if action_id else reverse("orchestration:approvals")
    except NoReverseMatch:
        path = f"/approvals/{action_id}/" if action_id else "/approvals/"
    base = (aol.console_url or "").rstrip("/")
    return f"{base}{path}" if base else path


def approvers_emails() -> list[str]:
    """Email addresses of the active users who may approve: the permission directly, through a group, or superuser."""
    app_label, codename = permissions.APPROVE_ACTION.split(".", 1)
    permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
    who = Q(is_superuser=True)
    if permission is not None:
        who |= Q(user_permissions=permission) | Q(groups__permissions=permission)
    users = get_user_model().objects.filter(who, is_active=True).exclude(email="")
    return sorted({email.strip() for email in users.values_list("email", flat=True) if email.strip()})


def _quoted(text: Any) -> str:
    text = str(text)
    return text if len(text) <= MAX_QUOTED_CHARS else text[:MAX_QUOTED_CHARS] + f"… ({len(text)} characters in all)"


def approval_summary(*, action: Action) -> str:
    """What ``action`` would send, for people: the post's text and where, the email's recipients and subject."""
    payload = action.payload if isinstance(action.payload, dict) else {}
    if action.action_type == "POST_SOCIAL" and "message" in payload:
        where = str(payload.get("platform", "?"))
        if payload.get("account"):
            where += f" as {payload['account']}"
        return f"Post to {where}:\n{_quoted(payload['message'])}"
    if action.action_type == "SEND_EMAIL" and "subject" in payload:
        to = payload.get("to")
        to_text = ", ".join(map(str, to)) if isinstance(to, list) else str(to)
        return f"Email to {to_text}\nSubject: {_quoted(payload['subject'])}\n\n{_quoted(payload.get('body', ''))}"
    return f"{action.action_type}: {_quoted(json.dumps(payload, ensure_ascii=False, sort_keys=True))}"


def _waiting(action: Action) -> Waiting:
    return Waiting(
        action_id=action.pk,
        action_type=action.action_type,
        summary=approval_summary(action=action),
        url=approval_console_link(action_id=action.pk),
        sha256=action.approval_sha256,
    )


def _message(batch: list[Waiting]) -> tuple[str, str]:
    """Subject and plain-text body of one notification about ``batch``."""
    if len(batch) == 1:
        one = batch[0]
        subject = f"[AOL] Action #{one.action_id} ({one.action_type}) waits for your approval"
        body = (
            f"Action #{one.action_id} ({one.action_type}) waits for a person to approve it before it runs for real.\n\n"
            f"{one.summary}\n\n"
            f"Review it, edit its text, approve or reject it: {one.url}\n"
            f"(PROOF artifact sha256 {one.sha256})\n"
        )
        return subject, body
    lines = [
        f"{len(batch)} actions wait for a person to approve them before they run for real.",
        f"All of them: {approval_console_link()}",
        "",
    ]
    for one in batch:
        lines.append(f"#{one.action_id} ({one.action_type}): {one.url}")
        lines += ["    " + line for line in one.summary.splitlines()]
        lines.append("")
    return f"[AOL] {len(batch)} actions wait for your approval", "\n".join(lines)


def _claim(*, limit: int) -> list[Action]:
    """Mark up to ``limit`` unannounced waiting actions announced, and return them (before anything is sent)."""
    with transaction.atomic():
        pending = Action.objects.awaiting_approval().filter(approval_notified_at__isnull=True)
        actions = list(pending.select_for_update(skip_locked=True).order_by("updated_at", "id")[:limit])
        if not actions:
            return []
        ids = [action.pk for action in actions]
        # Guarded: a row another notifier marked meanwhile (SQLite has no row locks) is not announced twice.
        marked = Action.objects.filter(
            pk__in=ids, status=ActionStatus.AWAITING_APPROVAL, approval_notified_at__isnull=True
        ).update(approval_notified_at=DbNow())
        if marked != len(ids):
            transaction.set_rollback(True)
            return []
    return actions


def _send_emails(batches: list[list[Waiting]], recipients: list[str]) -> int:
    """One message per batch and recipient (nobody sees the others' addresses), over one SMTP session."""
    messages = []
    for batch in batches:
        subject, body = _message(batch)
        messages += [EmailMessage(subject=subject, body=body, to=[address]) for address in recipients]
    connection = get_connection(fail_silently=False)
    return connection.send_messages(messages) or 0


def _send_webhook(url: str, secret: str, batches: list[list[Waiting]]) -> None:
    """POST each batch as one JSON event, signed as WEBHOOK signs (``AOL-Signature``), with an Idempotency-Key."""
    for batch in batches:
        subject, body = _message(batch)
        event = {
            "event": "approval.waiting",
            "text": f"{subject}\n\n{body}",  # what a chat's incoming webhook shows
            "approvals_url": approval_console_link(),
            "actions": [
                {"id": one.action_id, "action_type": one.action_type, "summary": one.summary, "url": one.url}
                for one in batch
            ],
        }
        data = json.dumps(event, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
        ids = ",".join(str(one.action_id) for one in batch)
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                IDEMPOTENCY_HEADER: "aol-approval-" + hashlib.sha256(ids.encode()).hexdigest()[:32],
                SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=str(int(time.time())), body=data),
            },
        )
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310  (http(s) only, checked)
            response.read(1024)


def _origin(url: str) -> str:
    """Where the webhook is, for messages: scheme and host only (a chat webhook's path is its secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"{type(exc.reason).__name__}: {exc.reason}" if isinstance(exc.reason, BaseException) else "URLError"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def approval_notify_pending(*, actor: str, limit: int = NOTIFY_BATCH) -> NotifyReport:
    """Announce the actions that started waiting for approval since the last pass; never raises for a failed send.

    One message per action, or one digest when more than AOL_APPROVAL_DIGEST_THRESHOLD start
    waiting at once. Each announced action gets an execution-log row saying who was told, or why not.
    """
    report = NotifyReport()
    actions = _claim(limit=limit)
    if not actions:
        return report
    report.announced = [action.pk for action in actions]
    waiting = [_waiting(action) for action in actions]
    threshold = max(int(aol.approval_digest_threshold), 1)
    batches = [waiting] if len(waiting) > threshold else [[one] for one in waiting]

    recipients = approvers_emails()
    mail_problem = real_email_problem()
    if mail_problem:
        report.problems.append(f"email not sent: {mail_problem}")
    elif not recipients:
        report.problems.append("no active user who may approve has an email address")
    else:
        try:
            report.emails = _send_emails(batches, recipients)
        except Exception as exc:  # a broken mail server must never break the queue
            logger.warning("approval notification email failed ids=%s: %s", report.announced, _reason(exc))
            report.problems.append(f"email failed ({_reason(exc)})")

    url = (aol.approval_webhook_url or "").strip()
    if url:
        secret = getattr(settings, "APPROVAL_WEBHOOK_SECRET", "") or ""
        if urlsplit(url).scheme not in ("http", "https"):
            report.problems.append("AOL_APPROVAL_WEBHOOK_URL is not an http(s) URL; webhook not called")
        elif not secret:
            report.problems.append(f"webhook {_origin(url)} not called: AOL_APPROVAL_WEBHOOK_SECRET is not set")
        else:
            try:
                _send_webhook(url, secret, batches)
                report.webhook = True
            except Exception as exc:
                logger.warning("approval notification webhook %s failed: %s", _origin(url), _reason(exc))
                report.problems.append(f"webhook {_origin(url)} failed ({_reason(exc)})")

    digest = f" (in a digest of {len(waiting)})" if len(batches) == 1 and len(waiting) > 1 else ""
    told = []
    if report.emails:
        told.append(f"email to {len(recipients)} approver(s)")
    if report.webhook:
        told.append(f"webhook {_origin(url)}")
    message = f"approvers notified{digest}: {', '.join(told) or 'nobody'}"
    if report.problems:
        message += f"; not delivered: {'; '.join(report.problems)}"
    level = LogLevel.WARNING if report.problems else LogLevel.INFO
    log_write_many(log_entry(action_id=pk, message=message, level=level, actor=actor) for pk in report.announced)
    logger.info("approval notification ids=%s %s", report.announced, report.summary())
    return report
