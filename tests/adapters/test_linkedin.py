"""POST_SOCIAL on LinkedIn: little-text escaping, the exact request as PROOF, REAL once, each answer of a local API."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from django.db import connections
from django.utils import timezone

from orchestration.adapters import adapter_get
from orchestration.adapters.artifacts import artifact_path, sha256_bytes
from orchestration.adapters.base import Attempt
from orchestration.adapters.platforms import platform_get
from orchestration.adapters.platforms.base import AUTHORIZATION_PLACEHOLDER, PostSpec
from orchestration.adapters.platforms.linkedin import LINKEDIN_VERSION, _retry_seconds, linkedin_commentary
from orchestration.adapters.platforms.rest import Answer
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import AccountCheckFailed, AccountRateLimited, InvalidPayload
from orchestration.models import Account, Action, ActionStatus, ExecutionLog
from orchestration.services.accounts import account_add
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.platform_servers.linkedin import PERSON_ID, PERSON_URN, TOKEN

# The daemon runs the adapter in a worker thread, on its own connection: it must see the committed account.
# The platform's rules and its API, not the database: once, like test_mastodon.py and test_bluesky.py
# (the daemon tests in tests/commands/test_x_linkedin_daemons.py run on PostgreSQL).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

KEY = Fernet.generate_key().decode()
TEXT = "We're hiring (remote) [EU]: ping @ann_b or see <careers> ~ 2 roles * 3 teams #hiring \\o/"
ESCAPED = r"We're hiring \(remote\) \[EU\]: ping \@ann\_b or see \<careers\> \~ 2 roles \* 3 teams #hiring \\o/"
CREDENTIALS = {"access_token": TOKEN, "person_id": PERSON_ID}


@pytest.fixture
def li_account(settings, linkedin_server):
    settings.AOL_CREDENTIALS_KEYS = [KEY]
    settings.AOL_APPROVAL_REQUIRED_TYPES = []
    return account_add(
        name="brand-li", platform="linkedin", base_url=linkedin_server.base_url, credentials=CREDENTIALS, actor="ops"
    )


def enqueue(key: str = "li-1", message: str = TEXT) -> Action:
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "linkedin", "account": "brand-li", "message": message},
        idempotency_key=key,
    )
    return action


def tick(number: int = 0, *, real: bool = True) -> None:
    control_set_proof_mode(enabled=not real, actor="ops", reason="linkedin test")
    daemon = Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None)
    try:
        daemon.tick(number)
    finally:
        # The adapter read the account on the daemon's worker thread: close that thread's connection, or
        # PostgreSQL cannot drop the test database at the end.
        daemon._runners.first.call(connections.close_all, deadline=time.monotonic() + 10)


def make_due(action: Action) -> None:
    Action.objects.filter(pk=action.pk).update(not_before=timezone.now() - timedelta(seconds=1))


def posted(server) -> list:
    return server.received("POST", "/rest/posts")


def expected_body(text: str = ESCAPED) -> bytes:
    return (
        '{"author":"' + PERSON_URN + '","commentary":"' + text.replace("\\", "\\\\") + '","visibility":"PUBLIC",'
        '"distribution":{"feedDistribution":"MAIN_FEED","targetEntities":[],"thirdPartyDistributionChannels":[]},'
        '"lifecycleState":"PUBLISHED","isReshareDisabledByAuthor":false}'
    ).encode()


def test_linkedin_commentary__escapes_every_reserved_character_but_hashtags():
    assert linkedin_commentary(TEXT) == ESCAPED
    assert linkedin_commentary("plain text, #tag, 100% ok!") == "plain text, #tag, 100% ok!"


def test_linkedin__counts_the_text_as_posted_and_refuses_too_long_at_enqueue(li_account):
    platform = platform_get("linkedin")
    assert platform.text_count("(x)").count == 5
    enqueue("fits", message="a" * 2998 + "()"[:1])  # 2999 + 1 escape = 3000
    with pytest.raises(InvalidPayload) as raised:
        enqueue("too-long", message="a" * 2999 + "_")  # 3001 as posted
    assert "'message' is 3001 characters (as posted); LinkedIn allows at most 3000" in str(raised.value)
    assert Action.objects.count() == 1


def test_linkedin__proof_writes_the_exact_request_without_the_token(li_account, linkedin_server):
    action = enqueue()
    tick(real=False)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS and linkedin_server.requests == []
    log = ExecutionLog.objects.get(action_id=action.pk)
    artifact = artifact_path(log.artifact_ref).read_bytes()
    assert sha256_bytes(artifact) == log.artifact_sha256
    head, body = artifact.split(b"\n\n", 1)
    assert head.decode().split("\n") == [
        f"POST {linkedin_server.base_url}/rest/posts",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "User-Agent: aicmo-aol/1",
        f"LinkedIn-Version: {LINKEDIN_VERSION}",
        "X-Restli-Protocol-Version: 2.0.0",
        f"Authorization: {AUTHORIZATION_PLACEHOLDER}",
    ]
    assert body == expected_body()
    assert TOKEN.encode() not in artifact


def test_linkedin__real_posts_once_exactly_the_rendered_bytes_and_records_the_url(li_account, linkedin_server):
    action = enqueue()
    rendered = adapter_get("POST_SOCIAL").proof_render(action).content
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    [received] = posted(linkedin_server)
    head, body = rendered.split(b"\n\n", 1)
    assert received.body == body
    for line in head.decode().split("\n")[1:-1]:
        name, value = line.split(": ", 1)
        assert received.headers[name.lower()] == value
    [post] = linkedin_server.live_posts()
    assert post["commentary"] == ESCAPED and post["author"] == PERSON_URN
    assert action.remote_id == post["id"] and action.remote_id.startswith("urn:li:share:")
    assert action.remote_url == f"https://www.linkedin.com/feed/update/{post['id']}/"


def test_linkedin__answer_lost_after_it_stored_it__the_lookup_finds_it__success_with_one_post(
    li_account, linkedin_server
):
    linkedin_server.script.append("drop")
    action = enqueue()
    tick()
    action.refresh_from_db()
    [post] = linkedin_server.live_posts()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    assert (action.remote_id, action.attempts) == (post["id"], 1)
    assert len(posted(linkedin_server)) == 1
    [lookup] = linkedin_server.received("GET", "/rest/posts")
    assert lookup.headers["x-restli-method"] == "FINDER" and "q=author" in lookup.path


def test_linkedin__answer_lost_and_nothing_stored__parked_for_review_not_retried(li_account, linkedin_server):
    linkedin_server.script.append("drop-unstored")
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.NEEDS_REVIEW, 1)
    assert "no post with this text was found among brand-li's posts since the action was created" in action.last_error
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert action.status == ActionStatus.NEEDS_REVIEW
    assert len(posted(linkedin_server)) == 1 and linkedin_server.live_posts() == []


def test_linkedin__a_lookup_without_r_member_social_parks_it_saying_why(li_account, linkedin_server):
    linkedin_server.can_read_posts = False
    linkedin_server.script.append("drop")
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.NEEDS_REVIEW
    assert "looking it up failed" in action.last_error and "r_member_social" in action.last_error
    assert len(linkedin_server.live_posts()) == 1  # it was posted: a person checks and resolves it


def test_linkedin__429_defers_the_account_and_posts_nothing(li_account, linkedin_server):
    linkedin_server.script.append((429, {"Retry-After": "300"}))
    account = Account.objects.get(name="brand-li")
    platform = platform_get("linkedin")
    spec = PostSpec(text=TEXT, idempotency_key="k", created_at=timezone.now())
    with pytest.raises(AccountRateLimited) as raised:
        platform.publish(
            account=account,
            credentials=CREDENTIALS,
            request=platform.build_request(account=account, spec=spec),
            spec=spec,
            attempt=Attempt(idempotency_key="k", proof=False),
        )
    assert (raised.value.account, raised.value.retry_after_seconds) == ("brand-li", 300)
    linkedin_server.script.append(429)  # no Retry-After: LinkedIn's daily limits reset at midnight UTC
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)  # not counted: the account waits
    assert "(attempt not counted): AccountRateLimited: " in action.deferred_note
    assert action.not_before > timezone.now() and linkedin_server.live_posts() == []


def test_linkedin__without_retry_after_the_wait_runs_to_midnight_utc():
    answer = Answer(status=429, reason="Too Many Requests", headers={}, body=b"")
    assert _retry_seconds(answer, now=datetime(2026, 12, 1, 23, 0, tzinfo=UTC)) == 3600


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (401, "The access token is expired or revoked"),
        (403, "The token lacks the w_member_social scope"),
        (426, f"LinkedIn-Version {LINKEDIN_VERSION} is no longer served"),
        (422, "Fix the text or the account"),
    ],
)
def test_linkedin__refusals_go_to_the_dlq_at_once_saying_what_to_do(li_account, linkedin_server, status, advice):
    linkedin_server.script.append(status)
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.DLQ, 1)
    assert f"refused to post: {status}" in action.last_error and advice in action.last_error
    assert TOKEN not in action.last_error


def test_linkedin__500_is_retried_and_the_retry_posts_once(li_account, linkedin_server):
    linkedin_server.script.append(500)
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.RETRY, 1) and "answered 500" in action.last_error
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS and len(linkedin_server.live_posts()) == 1


def test_linkedin__credentials_without_person_id_refuse_in_proof_saying_how_to_get_it(settings, linkedin_server):
    settings.AOL_CREDENTIALS_KEYS = [KEY]
    account_add(
        name="brand-li", platform="linkedin", base_url=linkedin_server.base_url, credentials={"access_token": TOKEN},
        actor="ops",
    )  # fmt: skip
    action = enqueue()
    tick(real=False)
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ and "need person_id" in action.last_error
    assert "which aol_accounts verify shows" in action.last_error


def test_linkedin__retract_deletes_the_post_by_its_urn(li_account, linkedin_server):
    action = enqueue()
    tick()
    action.refresh_from_db()
    account = Account.objects.get(name="brand-li")
    platform = platform_get("linkedin")
    platform.retract(account=account, credentials=CREDENTIALS, remote_id=action.remote_id, timeout=5)
    assert linkedin_server.live_posts() == []
    [delete] = linkedin_server.received("DELETE")
    assert delete.path == "/rest/posts/urn%3Ali%3Ashare%3A" + action.remote_id.rsplit(":", 1)[1]
    platform.retract(account=account, credentials=CREDENTIALS, remote_id=action.remote_id, timeout=5)  # gone: no-op


def test_linkedin__verify_says_who_the_token_is_and_what_is_wrong(li_account, linkedin_server):
    account = Account.objects.get(name="brand-li")
    platform = platform_get("linkedin")
    identity = platform.verify(account=account, credentials=CREDENTIALS, timeout=5)
    assert (identity.handle, identity.remote_id) == ("Ann Brand", PERSON_URN)
    with pytest.raises(AccountCheckFailed) as raised:
        platform.verify(account=account, credentials={"access_token": TOKEN}, timeout=5)
    assert f"person_id is missing: set person_id to {PERSON_ID!r}" in str(raised.value)
    with pytest.raises(AccountCheckFailed) as raised:
        platform.verify(account=account, credentials={**CREDENTIALS, "access_token": "old-token-canary"}, timeout=5)
    assert (
        "401" in str(raised.value)
        and "expired or revoked" in str(raised.value)
        and "old-token-canary" not in str(raised.value)
    )
    linkedin_server.stop()
    with pytest.raises(AccountCheckFailed) as raised:
        platform.verify(account=account, credentials=CREDENTIALS, timeout=5)
    assert "Could not reach LinkedIn (http://127.0.0.1:" in str(raised.value)
