"""Mastodon end to end through a real run_aol_daemon process: PROOF for approval → approve → one post, even after a
connection dropped once the instance had stored it."""

import pytest
from cryptography.fernet import Fernet

from orchestration.adapters.artifacts import artifact_path
from orchestration.models import ActionStatus
from orchestration.services.accounts import account_add
from orchestration.services.approval import action_approve, approval_review
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until
from tests.platform_servers.mastodon import TOKEN

# REAL runs against a platform's local server, once, on PostgreSQL (production); the adapter's own tests
# run on SQLite.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

MESSAGE = "Our spring collection is live: https://shop.example/spring — thanks @ann@social.example!"


def test_mastodon_daemon__approved_post_is_made_once_despite_a_dropped_connection(
    start_daemon, mastodon_server, settings
):
    key = Fernet.generate_key().decode()
    settings.AOL_CREDENTIALS_KEYS = [key]
    account_add(
        name="brand-main", platform="mastodon", base_url=mastodon_server.url, credentials={"access_token": TOKEN},
        actor="ops",
    )  # fmt: skip
    control_set_proof_mode(enabled=False, actor="ops", reason="end-to-end REAL test")
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "mastodon", "account": "brand-main", "message": MESSAGE},
        idempotency_key="spring-launch",
    )
    # No AOL_APPROVAL_REQUIRED_TYPES in the daemon's environment: the gate is on by default for POST_SOCIAL.
    daemon = start_daemon(env={"AOL_CREDENTIALS_KEYS": key})

    def status() -> str:
        action.refresh_from_db()
        return action.status

    wait_until(lambda: status() == ActionStatus.AWAITING_APPROVAL, timeout=60, message="the PROOF for approval")
    assert mastodon_server.requests == []  # nothing is sent before a person approves
    artifact = artifact_path(action.approval_artifact_ref).read_bytes()
    assert TOKEN.encode() not in artifact

    mastodon_server.script.append("drop")  # stored, then the connection closes without an answer
    review = approval_review(action=action)
    action_approve(action_id=action.pk, sha256=review.sha256, actor="ops", reason="copy checked")
    wait_until(lambda: status() == ActionStatus.SUCCESS, timeout=60, message="the REAL post")

    [post] = mastodon_server.posts
    assert post.text == MESSAGE and len(mastodon_server.statuses) == 1
    first, second = mastodon_server.post_requests()  # the dropped one and its retry, with the same key and bytes
    body = artifact.split(b"\n\n", 1)[1]
    assert first.body == second.body == body
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert (action.remote_id, action.remote_url) == (post.id, mastodon_server.status_url(post.id))
    assert action.attempts == 2
    assert TOKEN not in daemon.output() and key not in daemon.output()
