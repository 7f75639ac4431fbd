"""SEND_EMAIL end to end: a real run_aol_daemon process in REAL mode sending to a real SMTP server."""

import email
import email.policy

import pytest

from orchestration.adapters.send_email import message_id_for
from orchestration.models import ActionStatus, ExecutionLog
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "smtp-password-canary-5150"


def enqueue(key: str, to: str):
    action, _ = action_enqueue(
        action_type="SEND_EMAIL",
        payload={"to": to, "subject": f"Hello {key}", "body": "Sent by the AOL daemon."},
        idempotency_key=key,
    )
    return action


def test_send_email_daemon__real_mode_sends_retries_451_and_dead_letters_550(start_daemon, smtp_server):
    control_set_proof_mode(enabled=False, actor="ops", reason="end-to-end REAL test")
    sent = enqueue("e2e-sent", "ann@example.com")
    ungated = {"AOL_APPROVAL_REQUIRED_TYPES": ""}  # the approval gate is tested in tests/adapters
    daemon = start_daemon("--ticks", "1", env={**smtp_server.env(), "EMAIL_HOST_PASSWORD": PASSWORD, **ungated})
    assert daemon.wait(timeout=60) == 0, daemon.output()
    out = daemon.output()
    assert PASSWORD not in out
    assert "[AOL] PROOF mode: False" in out
    assert "[AOL Tick 0] SUCCESS | Actions: 1 attempted, 1 succeeded" in out
    sent.refresh_from_db()
    assert sent.status == ActionStatus.SUCCESS, sent.last_error
    [received] = smtp_server.messages
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    assert message["Message-ID"] == message_id_for("e2e-sent")
    assert message["From"] == "aicmo@localhost"  # DEFAULT_FROM_EMAIL's default
    assert received.rcpt_tos == ["ann@example.com"]
    assert ExecutionLog.objects.get(action_id=sent.pk).message.startswith("REAL: sent to 1 recipient(s)")

    smtp_server.mode = "451"
    later = enqueue("e2e-later", "bob@example.com")
    daemon = start_daemon("--ticks", "1", env={**smtp_server.env(), **ungated})
    assert daemon.wait(timeout=60) == 0, daemon.output()
    later.refresh_from_db()
    assert (later.status, later.attempts) == (ActionStatus.RETRY, 1)
    assert "451" in later.last_error

    smtp_server.mode = "550"
    never = enqueue("e2e-never", "nobody@example.com")
    daemon = start_daemon("--ticks", "3", env={**smtp_server.env(), **ungated})
    assert daemon.wait(timeout=60) == 0, daemon.output()
    never.refresh_from_db()
    assert (never.status, never.attempts) == (ActionStatus.DLQ, 1)
    assert "550 5.1.1 mailbox unavailable" in never.last_error
    later.refresh_from_db()
    assert later.status == ActionStatus.DLQ  # its retries met 550 too: permanent, no more attempts
    assert len(smtp_server.messages) == 1


def test_send_email_daemon__proof_mode_writes_the_eml_and_never_connects(start_daemon, smtp_server, artifacts_dir):
    action = enqueue("e2e-proof", "ann@example.com")
    daemon = start_daemon("--ticks", "1", env=smtp_server.env())  # the proof_mode flag is on by default
    assert daemon.wait(timeout=60) == 0, daemon.output()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS
    wait_until(lambda: list((artifacts_dir / "send_email").glob("*.eml")), message="the .eml artifact")
    assert smtp_server.connections == 0 and smtp_server.messages == []
