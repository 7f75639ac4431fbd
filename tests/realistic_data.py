"""Realistic console data for layout tests: every status, long keys, long errors, long log lines and reasons.

Long values include unbroken runs (a stack-trace path, a base64 blob), the case that widens a table
when the page does not let it wrap.
"""

from datetime import timedelta

from django.utils import timezone

from orchestration.models import (
    Action,
    ActionStatus,
    ActionTypePause,
    AuditEntry,
    AuditOutcome,
    ExecutionLog,
    LogLevel,
    RateLimit,
    Schedule,
    TickLedger,
    TickStatus,
)
from orchestration.services.enqueue import MAX_IDEMPOTENCY_KEY_LENGTH

UNBROKEN = "/srv/aicmo/venv/lib/python3.11/site-packages/requests/adapters.py:" + "Q2FtcGFpZ24" * 30
LONG_ERROR = (
    "TransientAdapterError: HTTPSConnectionPool(host='api.linkedin.example', port=443): Max retries exceeded "
    "with url: /v2/ugcPosts?projection=(id,author,lifecycleState,specificContent) (Caused by "
    f"ConnectTimeoutError(timeout=10.0)) {UNBROKEN} " + "and more context; " * 40
)


def long_key(n: int) -> str:
    stem = f"campaign-2026-spring-launch-{n}-linkedin-acme-corporation-emea-"
    return (stem + "x" * MAX_IDEMPOTENCY_KEY_LENGTH)[:MAX_IDEMPOTENCY_KEY_LENGTH]


def realistic_console_data() -> dict[str, int]:
    """Fill the database; returns the ids worth opening (an action of each kind)."""
    now = timezone.now()
    actions = []
    for n, status in enumerate(ActionStatus.values * 3):
        failed = status in (ActionStatus.DLQ, ActionStatus.RETRY, ActionStatus.FAILED, ActionStatus.NEEDS_REVIEW)
        actions.append(
            Action(
                idempotency_key=long_key(n),
                action_type="POST_SOCIAL" if n % 2 else "DRAFT_SOCIAL",
                payload={"platform": "threads", "account": "acme", "message": "Spring launch " + "words " * 80},
                status=status,
                attempts=3 if failed else 1,
                lease_token=1 if status == ActionStatus.RUNNING else None,
                last_error=LONG_ERROR if failed else "",
                not_before=now + timedelta(hours=n * 5) if status == ActionStatus.PENDING else now,
                priority=(n % 7) * 10 - 30,
                requires_approval=status == ActionStatus.AWAITING_APPROVAL,
                approval_artifact_ref=f"post_social/approval-{n}-{UNBROKEN[:80]}.txt"
                if status == ActionStatus.AWAITING_APPROVAL
                else "",
                approval_sha256="ab" * 32 if status == ActionStatus.AWAITING_APPROVAL else "",
                deferred_note=f"deferred: rate limit 1 per 1h per platform+account of POST_SOCIAL reached for "
                f"'linkedin|{UNBROKEN[:60]}'"
                if status == ActionStatus.READY
                else "",
                rate_key=f"linkedin|{UNBROKEN[:60]}" if status == ActionStatus.READY else "",
            )
        )
    created = Action.objects.bulk_create(actions)
    ExecutionLog.objects.bulk_create(
        ExecutionLog(
            action_id=action.pk,
            level=[LogLevel.INFO, LogLevel.WARNING, LogLevel.ERROR][n % 3],
            message=f"attempt {n} of {action.action_type}: {LONG_ERROR[: 200 + n * 20]}",
            actor=f"worker-host-with-a-long-name.internal.example:{40000 + n}:deadbeef",
            artifact_ref=f"post_social/{action.pk}-{UNBROKEN[:90]}.txt",
            artifact_sha256="cd" * 32,
        )
        for n, action in enumerate(created)
    )
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor="operator-with-a-long-username@example.com",
            verb=["pause", "retry DLQ", "cancel", "switch to REAL"][n % 4],
            outcome=AuditOutcome.values[n % 3],
            target="33 actions: " + ", ".join(f"#{pk}" for pk in range(1000, 1060))[:230],
            before={"status": "DLQ", "ids": list(range(40))},
            after={"status": "PENDING", "note": UNBROKEN[:120]},
            reason="customer complaint ticket " + UNBROKEN[:150],
        )
        for n in range(30)
    )
    TickLedger.objects.bulk_create(
        TickLedger(
            started_at=now - timedelta(seconds=5 * n + 1),
            finished_at=now - timedelta(seconds=5 * n),
            status=TickStatus.values[n % len(TickStatus.values)],
            actions_attempted=n % 5,
            actions_succeeded=n % 3,
            owner=f"worker-host-with-a-long-name.internal.example:{40000 + n}:deadbeef",
            notes=LONG_ERROR[:400] if n % 4 == 0 else "",
            queue_depth={"PENDING": 30000 + n, "DLQ": 24000, "NEEDS_REVIEW": 500, "AWAITING_APPROVAL": 2500},
        )
        for n in range(60)
    )
    Schedule.objects.create(
        name="weekly newsletter for the EMEA enterprise segment, spring campaign " + "x" * 30,
        action_type="SLEEP",
        payload_template={"seconds": 0},
        cron="0 9 * * 1-5",
    )
    Schedule.objects.create(
        name="hourly drill", action_type="SLEEP", payload_template={"seconds": 0}, interval_seconds=3600
    )
    RateLimit.objects.create(action_type="POST_SOCIAL", key_fields="platform,account", max_count=1, period_seconds=3600)
    ActionTypePause.objects.create(
        action_type="DRAFT_SOCIAL", paused_by="alice", reason="legal review " + UNBROKEN[:100]
    )
    by_status = {action.status: action.pk for action in created}
    return {
        "dlq": by_status[ActionStatus.DLQ],
        "awaiting": by_status[ActionStatus.AWAITING_APPROVAL],
        "pending": by_status[ActionStatus.PENDING],
    }
