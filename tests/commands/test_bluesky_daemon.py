"""Bluesky end to end: enqueue → PROOF for approval → approve → REAL by a real run_aol_daemon process, the
connection dropped after the PDS stored the post, and still exactly one post."""

import json

import pytest
from cryptography.fernet import Fernet

from orchestration.adapters.artifacts import artifact_path
from orchestration.adapters.platforms.bluesky import bluesky_rkey
from orchestration.models import Action, ActionStatus, ExecutionLog
from orchestration.services.accounts import account_add
from orchestration.services.approval import action_approve, approval_review
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until
from tests.platform_servers.bluesky import APP_PASSWORD, DID, HANDLE

# REAL runs against a platform's local server, once, on PostgreSQL (production); the adapter's own tests
# run on SQLite.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]


def test_bluesky_daemon__approved_post_survives_a_dropped_answer_and_is_posted_once(
    settings, start_daemon, bluesky_server
):
    key = Fernet.generate_key().decode()
    settings.AOL_CREDENTIALS_KEYS = [key]
    account_add(
        name="brand-sky",
        platform="bluesky",
        base_url=bluesky_server.url,
        credentials={"identifier": HANDLE, "app_password": APP_PASSWORD},
        actor="ops",
    )
    control_set_proof_mode(enabled=False, actor="ops", reason="end-to-end REAL test")
    env = {"AOL_CREDENTIALS_KEYS": key}  # the approval gate is on for POST_SOCIAL by default
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "bluesky", "account": "brand-sky", "message": "Spring is here 🌷 #spring"},
        idempotency_key="spring-sky",
    )
    daemon = start_daemon("--ticks", "1", env=env)
    assert daemon.wait(timeout=60) == 0, daemon.output()
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL, action.last_error
    assert bluesky_server.calls("com.atproto.repo.createRecord") == []  # nothing is posted before a person approves

    review = approval_review(action=action)
    action_approve(action_id=action.pk, sha256=review.sha256, actor="ops", reason="copy checked")
    bluesky_server.faults["com.atproto.repo.createRecord"].append("drop")  # stored, then no answer
    daemon = start_daemon(env=env)
    wait_until(
        lambda: Action.objects.filter(pk=action.pk, status=ActionStatus.SUCCESS).exists(),
        timeout=60,
        message="the action's SUCCESS",
    )
    action.refresh_from_db()
    assert action.attempts == 2, daemon.output()
    messages = "\n".join(ExecutionLog.objects.filter(action_id=action.pk).values_list("message", flat=True))
    assert "OutcomeUnknown" in messages and "no answer to createRecord" in messages, messages
    rkey = bluesky_rkey(idempotency_key="spring-sky", created_at=action.created_at)
    assert list(bluesky_server.records) == [rkey]  # exactly one post
    assert action.remote_id == f"at://{DID}/app.bsky.feed.post/{rkey}"
    assert action.remote_url == f"https://bsky.app/profile/{HANDLE}/post/{rkey}"
    [create] = bluesky_server.calls("com.atproto.repo.createRecord")
    approved = artifact_path(action.approval_artifact_ref).read_bytes()
    assert approved.split(b"\n\n", 1)[1] == create.body  # what was approved is what was sent
    assert json.loads(create.body)["record"]["text"] == "Spring is here 🌷 #spring"
    assert APP_PASSWORD not in daemon.output() and key not in daemon.output()
