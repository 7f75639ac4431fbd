"""WEBHOOK end to end: enqueue → PROOF for approval → approve → REAL, by a real run_aol_daemon process."""

import json

import pytest

from orchestration.adapters.artifacts import artifact_path
from orchestration.models import ActionStatus
from orchestration.services.approval import action_approve, approval_review
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.webhook_server import SECRET, SECRET_ENV

# REAL runs against a platform's local server, once, on PostgreSQL (production); the adapter's own tests
# run on SQLite.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]


def test_webhook_daemon__proof_then_approval_then_one_signed_event_and_its_remote_id(
    start_daemon, webhook_server, webhook_settings
):
    control_set_proof_mode(enabled=False, actor="ops", reason="end-to-end REAL test")
    env = {
        "AOL_WEBHOOKS": json.dumps({"crm": webhook_server.endpoint()}),
        SECRET_ENV: SECRET,
        "AOL_APPROVAL_REQUIRED_TYPES": "WEBHOOK",
    }
    action, _ = action_enqueue(
        action_type="WEBHOOK",
        payload={"endpoint": "crm", "event": "campaign.launched", "data": {"campaign": "spring"}},
        idempotency_key="launch-spring",
    )
    daemon = start_daemon("--ticks", "1", env=env)
    assert daemon.wait(timeout=60) == 0, daemon.output()
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL, action.last_error
    assert webhook_server.requests == []  # nothing is sent before a person approves

    review = approval_review(action=action)
    action_approve(action_id=action.pk, sha256=review.sha256, actor="ops", reason="copy checked")
    daemon = start_daemon("--ticks", "1", env=env)
    assert daemon.wait(timeout=60) == 0, daemon.output()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    [event] = webhook_server.events
    assert event["event"] == "campaign.launched" and event["data"] == {"campaign": "spring"}
    [received] = webhook_server.requests
    assert artifact_path(action.approval_artifact_ref).read_bytes().split(b"\n\n", 1)[1] == received.body
    assert (action.remote_id, action.remote_url) == ("evt-1", f"http://127.0.0.1:{webhook_server.port}/events/1")
    assert SECRET not in daemon.output()
