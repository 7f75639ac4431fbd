"""X and LinkedIn end to end by real run_aol_daemon processes: PROOF → approve → one post, and a kill mid-post."""

import signal

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from orchestration.adapters.artifacts import artifact_path
from orchestration.credentials import account_credentials
from orchestration.models import Account, ActionStatus, Lease
from orchestration.services.accounts import account_add, account_verify_by_name
from orchestration.services.approval import action_approve, approval_review
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until
from tests.platform_servers import linkedin as li
from tests.platform_servers import x

# REAL runs against a platform's local server, once, on PostgreSQL (production); the adapter's own tests
# run on SQLite.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

KEY = Fernet.generate_key().decode()


@pytest.fixture
def keys(settings):
    settings.AOL_CREDENTIALS_KEYS = [KEY]
    control_set_proof_mode(enabled=False, actor="ops", reason="end-to-end REAL test")
    return {"AOL_CREDENTIALS_KEYS": KEY}


def _proof_approve_real(start_daemon, env, action, server) -> None:
    daemon = start_daemon("--ticks", "1", env={**env, "AOL_APPROVAL_REQUIRED_TYPES": "POST_SOCIAL"})
    assert daemon.wait(timeout=60) == 0, daemon.output()
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL, action.last_error
    assert server.requests == []  # nothing is sent before a person approves
    review = approval_review(action=action)
    action_approve(action_id=action.pk, sha256=review.sha256, actor="ops", reason="copy checked")
    daemon = start_daemon("--ticks", "1", env={**env, "AOL_APPROVAL_REQUIRED_TYPES": "POST_SOCIAL"})
    assert daemon.wait(timeout=60) == 0, daemon.output()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    assert server.token not in daemon.output()


def test_x_daemon__proof_then_approval_then_one_post_and_its_url(start_daemon, keys, x_server):
    account_add(
        name="brand-x", platform="x", base_url=x_server.base_url,
        credentials={"access_token": x.TOKEN, "username": x.USERNAME}, actor="ops",
    )  # fmt: skip
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "x", "account": "brand-x", "message": "Spring is here 🌷 https://shop.example.com"},
        idempotency_key="spring-x",
    )
    _proof_approve_real(start_daemon, keys, action, x_server)
    [post] = x_server.live_posts()
    [received] = x_server.received("POST", "/2/tweets")
    assert artifact_path(action.approval_artifact_ref).read_bytes().split(b"\n\n", 1)[1] == received.body
    assert action.remote_url == f"https://x.com/{x.USERNAME}/status/{post['id']}"


def test_linkedin_daemon__proof_then_approval_then_one_post_and_its_url(start_daemon, keys, linkedin_server):
    account_add(
        name="brand-li", platform="linkedin", base_url=linkedin_server.base_url,
        credentials={"access_token": li.TOKEN, "person_id": li.PERSON_ID}, actor="ops",
    )  # fmt: skip
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "linkedin", "account": "brand-li", "message": "We're hiring (two roles) #jobs"},
        idempotency_key="hiring-li",
    )
    _proof_approve_real(start_daemon, keys, action, linkedin_server)
    [post] = linkedin_server.live_posts()
    assert post["commentary"] == r"We're hiring \(two roles\) #jobs"
    [received] = linkedin_server.received("POST", "/rest/posts")
    assert artifact_path(action.approval_artifact_ref).read_bytes().split(b"\n\n", 1)[1] == received.body
    assert action.remote_url == f"https://www.linkedin.com/feed/update/{post['id']}/"


def test_x_daemon__killed_while_its_post_is_in_flight__recovery_parks_it_for_review(start_daemon, keys, x_server):
    account_add(
        name="brand-x", platform="x", base_url=x_server.base_url, credentials={"access_token": x.TOKEN}, actor="ops"
    )
    x_server.script.append("hang")  # X received the post and has not answered
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "x", "account": "brand-x", "message": "Launch day"},
        idempotency_key="launch-x",
    )
    env = {**keys, "AOL_APPROVAL_REQUIRED_TYPES": ""}
    first = start_daemon(env=env)
    wait_until(lambda: x_server.received("POST", "/2/tweets"), timeout=30, message="the post reaching X")
    first.signal(signal.SIGKILL)
    first.wait(timeout=10)
    action.refresh_from_db()
    assert action.status == ActionStatus.RUNNING
    # A one-tick daemon leaves at once while the dead one's lease is unexpired: start it after the TTL.
    wait_until(
        lambda: not Lease.objects.filter(expires_at__gt=timezone.now()).exists(), timeout=30, message="lease expiry"
    )
    second = start_daemon("--ticks", "1", env=env)
    assert second.wait(timeout=60) == 0, second.output()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.NEEDS_REVIEW, 1), action.last_error
    assert len(x_server.received("POST", "/2/tweets")) == 1  # not sent again


def test_x_daemon__an_expired_token_is_refreshed_once_while_a_verify_races_it_and_shown_nowhere(
    start_daemon, keys, x_server
):
    """The daemon meets a 401 and refreshes (X is slow to answer); an admin Verify meets the 401 meanwhile, waits
    for the daemon's row lock, and takes the rotated tokens: one refresh reaches X, the used token is never sent
    again."""
    x_server.client_secret = x.CLIENT_SECRET
    x_server.token_delay = 2.0
    account_add(
        name="brand-x",
        platform="x",
        base_url=x_server.base_url,
        credentials={
            "access_token": x.TOKEN,
            "refresh_token": x.REFRESH_TOKEN,
            "client_id": x.CLIENT_ID,
            "client_secret": x.CLIENT_SECRET,
            "username": x.USERNAME,
        },
        actor="ops",
    )
    x_server.expire()
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "x", "account": "brand-x", "message": "Two hours later"},
        idempotency_key="later-x",
    )
    daemon = start_daemon("--ticks", "1", env={**keys, "AOL_APPROVAL_REQUIRED_TYPES": ""})
    wait_until(x_server.token_requests, timeout=30, message="the daemon's refresh reaching X")
    identity = account_verify_by_name(name="brand-x")  # reads the old tokens: the daemon has not stored yet
    assert identity.handle == f"@{x.USERNAME}"
    assert daemon.wait(timeout=60) == 0, daemon.output()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    assert len(x_server.live_posts()) == 1 and len(x_server.token_requests()) == 1
    met_401 = [r for r in x_server.received("GET", "/2/users/me") if r.headers["authorization"] == f"Bearer {x.TOKEN}"]
    assert len(met_401) == 1  # the Verify did race the refresh
    stored = account_credentials(account=Account.objects.get(name="brand-x"))
    assert (stored["access_token"], stored["refresh_token"]) == (
        "x-access-refreshed-1-canary",
        "x-refresh-rotated-1-canary",
    )
    assert x_server.used_refresh_tokens == {x.REFRESH_TOKEN}
    output = daemon.output()
    for secret in (x.TOKEN, x.REFRESH_TOKEN, x.CLIENT_SECRET, stored["access_token"], stored["refresh_token"]):
        assert secret not in output and secret not in action.last_error
