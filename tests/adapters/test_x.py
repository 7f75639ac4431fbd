"""POST_SOCIAL on X: text as X counts it, the exact request as PROOF, REAL once, and each answer of a local X API."""

import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
from cryptography.fernet import Fernet
from django.db import connections
from django.utils import timezone

from orchestration.adapters import adapter_get
from orchestration.adapters.artifacts import artifact_path, sha256_bytes
from orchestration.adapters.base import Attempt
from orchestration.adapters.platforms import platform_get
from orchestration.adapters.platforms.base import AUTHORIZATION_PLACEHOLDER, PostSpec
from orchestration.adapters.platforms.x import x_text_count
from orchestration.credentials import account_credentials
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import AccountCheckFailed, AccountRateLimited, InvalidPayload, OutcomeUnknown
from orchestration.models import Account, Action, ActionStatus, AuditEntry, ExecutionLog
from orchestration.services.accounts import account_add, account_verify
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.platform_servers.x import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, TOKEN, USER_ID, USERNAME

# The daemon runs the adapter in a worker thread, on its own connection: it must see the committed account.
# The platform's rules and its API, not the database: once, like test_mastodon.py and test_bluesky.py
# (the daemon tests in tests/commands/test_x_linkedin_daemons.py run on PostgreSQL).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

KEY = Fernet.generate_key().decode()
TEXT = "Spring launch: 20% off everything & free shipping <today> https://shop.example.com/spring?utm=x"


def add_x_account(settings, x_server, **credentials: str):
    """The connected account "brand-x" on the local X server, with TOKEN, USERNAME and ``credentials``."""
    settings.AOL_CREDENTIALS_KEYS = [KEY]
    settings.AOL_APPROVAL_REQUIRED_TYPES = []
    return account_add(
        name="brand-x",
        platform="x",
        base_url=x_server.base_url,
        credentials={"access_token": TOKEN, "username": USERNAME, **credentials},
        actor="ops",
    )


@pytest.fixture
def x_account(settings, x_server):
    return add_x_account(settings, x_server)


@pytest.fixture
def x_refreshable(settings, x_server):
    """An X account whose credentials can renew the access token (a public client: client_id, no secret)."""
    return add_x_account(settings, x_server, refresh_token=REFRESH_TOKEN, client_id=CLIENT_ID)


def stored() -> dict[str, str]:
    return account_credentials(account=Account.objects.get(name="brand-x"))


def enqueue(key: str = "x-1", message: str = TEXT, account: str = "brand-x") -> Action:
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "x", "account": account, "message": message},
        idempotency_key=key,
    )
    return action


def tick(number: int = 0, *, real: bool = True) -> None:
    control_set_proof_mode(enabled=not real, actor="ops", reason="x test")
    daemon = Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None)
    try:
        daemon.tick(number)
    finally:
        # The adapter read the account on the daemon's worker thread: close that thread's connection, or
        # PostgreSQL cannot drop the test database at the end.
        daemon._runners.first.call(connections.close_all, deadline=time.monotonic() + 10)


def make_due(action: Action) -> None:
    Action.objects.filter(pk=action.pk).update(not_before=timezone.now() - timedelta(seconds=1))


def posted(x_server) -> list:
    return x_server.received("POST", "/2/tweets")


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("a" * 280, 280),
        ("漢" * 140, 280),  # CJK weighs 2
        ("👍" * 140, 280),  # an emoji weighs 2
        ("👨\u200d👩\u200d👧", 2),  # one ZWJ sequence is one emoji
        ("👍🏽", 2),  # with a skin tone
        ("🇫🇷", 2),  # a flag
        ("e\u0301", 1),  # counted after NFC: é
        ("read https://example.com/" + "a" * 100, 5 + 23),  # a URL counts 23 however long
        ("see example.com.", 4 + 23 + 1),  # a bare domain is a URL; the full stop is not
        ("“quotes” – fine", 15),  # U+2013, U+201C/D are in the light ranges
        ("ann@example.com", 15),  # an email address is not a link
    ],
)
def test_x_text_count__weighs_as_twitter_text_config_v3(text, count):
    assert x_text_count(text) == count


def test_x__too_long_for_x_is_refused_at_enqueue_naming_the_weighted_count(x_account):
    with pytest.raises(InvalidPayload) as raised:
        enqueue(message="漢" * 141)
    assert "'message' is 282 weighted characters; X allows at most 280" in str(raised.value)
    assert not Action.objects.exists()
    enqueue(message="漢" * 140)  # 280: fits


def test_x__is_not_idempotent_and_supports_real_with_an_account(x_account):
    adapter = adapter_get("POST_SOCIAL")
    payload = {"platform": "x", "account": "brand-x", "message": "hi"}
    assert adapter.idempotent_for(payload) is False and adapter.supports_real_for(payload)
    assert adapter.idempotent_for({**payload, "platform": "twitter"}) is False


def test_x__proof_writes_the_exact_request_without_the_token(x_account, x_server):
    action = enqueue()
    tick(real=False)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS and x_server.requests == []
    log = ExecutionLog.objects.get(action_id=action.pk)
    artifact = artifact_path(log.artifact_ref).read_bytes()
    assert sha256_bytes(artifact) == log.artifact_sha256
    head, body = artifact.split(b"\n\n", 1)
    assert head.decode().split("\n") == [
        f"POST {x_server.base_url}/2/tweets",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "User-Agent: aicmo-aol/1",
        f"Authorization: {AUTHORIZATION_PLACEHOLDER}",
    ]
    assert body.decode() == '{"text":"' + TEXT + '"}'
    assert TOKEN.encode() not in artifact


def test_x__real_posts_once_exactly_the_rendered_bytes_and_records_the_url(x_account, x_server):
    action = enqueue()
    rendered = adapter_get("POST_SOCIAL").proof_render(action).content
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    [received] = posted(x_server)
    head, body = rendered.split(b"\n\n", 1)
    assert received.body == body
    for line in head.decode().split("\n")[1:-1]:  # every header but the Authorization placeholder
        name, value = line.split(": ", 1)
        assert received.headers[name.lower()] == value
    assert received.headers["authorization"] == f"Bearer {TOKEN}"
    [post] = x_server.live_posts()
    assert post["text"] == TEXT
    assert (action.remote_id, action.remote_url) == (post["id"], f"https://x.com/{USERNAME}/status/{post['id']}")
    log = ExecutionLog.objects.filter(action_id=action.pk).last()
    assert log.message == f"REAL: posted to X as brand-x, id {post['id']}" and TOKEN not in log.message


def test_x__answer_lost_after_x_stored_it__the_lookup_finds_it__success_with_one_post(x_account, x_server):
    x_server.script.append("drop")
    action = enqueue()
    tick()
    action.refresh_from_db()
    [post] = x_server.live_posts()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    assert (action.remote_id, action.attempts) == (post["id"], 1)
    assert len(posted(x_server)) == 1  # looked up, not posted again
    [lookup] = x_server.received("GET", f"/2/users/{USER_ID}/tweets")
    assert "start_time=" in lookup.path and "max_results=100" in lookup.path
    log = ExecutionLog.objects.filter(action_id=action.pk).last()
    assert "found among its recent posts after an unknown outcome" in log.message


def test_x__answer_lost_and_nothing_stored__parked_for_review_not_retried(x_account, x_server):
    x_server.script.append("drop-unstored")
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.NEEDS_REVIEW, 1)
    assert "no post with this text was found among brand-x's posts since the action was created" in action.last_error
    assert "the post may have been made" in action.last_error
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert action.status == ActionStatus.NEEDS_REVIEW
    assert len(posted(x_server)) == 1 and x_server.live_posts() == []


def test_x__a_post_with_the_same_text_made_before_the_action_is_not_taken_for_it(x_account, x_server):
    x_server._store(TEXT)  # the same text, posted earlier by someone else's tool
    for post in x_server.posts:
        post["created_at"] -= timedelta(minutes=5)
    x_server.posts[0]["deleted"] = True  # (deleted, or X would refuse the duplicate)
    x_server.script.append("drop-unstored")
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.NEEDS_REVIEW


def test_x__429_defers_the_account_until_the_reset_and_posts_nothing(x_account, x_server):
    reset = int(time.time()) + 600
    x_server.script.append((429, {"x-rate-limit-reset": str(reset), "x-rate-limit-remaining": "0"}))
    action = enqueue()
    account = Account.objects.get(name="brand-x")
    platform = platform_get("x")
    spec = PostSpec(text=TEXT, idempotency_key="k", created_at=timezone.now())
    with pytest.raises(AccountRateLimited) as raised:
        platform.publish(
            account=account,
            credentials={"access_token": TOKEN},
            request=platform.build_request(account=account, spec=spec),
            spec=spec,
            attempt=Attempt(idempotency_key="k", proof=False),
        )
    assert raised.value.account == "brand-x" and 590 <= raised.value.retry_after_seconds <= 600
    x_server.script.append((429, {"x-rate-limit-reset": str(reset), "x-rate-limit-remaining": "0"}))
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)  # not counted: the account waits
    assert "(attempt not counted): AccountRateLimited: " in action.deferred_note
    assert 590 <= (action.not_before - timezone.now()).total_seconds() <= 601
    assert x_server.live_posts() == []


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (401, "The access token is expired, revoked or not a user token"),
        (403, "The token lacks a scope (posting needs tweet.write"),
        (400, "Fix the text or the account"),
    ],
)
def test_x__refusals_go_to_the_dlq_at_once_saying_what_to_do(x_account, x_server, status, advice):
    x_server.script.append(status)
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.DLQ, 1)
    assert f"refused to post: {status}" in action.last_error and advice in action.last_error
    assert TOKEN not in action.last_error


def test_x__a_wrong_token_is_refused_with_401_and_never_shown(x_account, x_server):
    x_server.token = "another-token"
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ and "401" in action.last_error and TOKEN not in action.last_error


def test_x__500_is_retried_and_the_retry_posts_once(x_account, x_server):
    x_server.script.append(500)
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.RETRY, 1) and "answered 500" in action.last_error
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS and len(x_server.live_posts()) == 1


def test_x__nobody_listening_is_transient_and_nothing_was_posted(x_account, x_server):
    x_server.stop()
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRY and "could not connect" in action.last_error


def test_x__retract_deletes_the_post_and_a_second_retract_has_nothing_to_do(x_account, x_server):
    action = enqueue()
    tick()
    action.refresh_from_db()
    account = Account.objects.get(name="brand-x")
    platform = platform_get("x")
    platform.retract(account=account, credentials={"access_token": TOKEN}, remote_id=action.remote_id, timeout=5)
    assert x_server.live_posts() == []
    platform.retract(account=account, credentials={"access_token": TOKEN}, remote_id=action.remote_id, timeout=5)


def test_x__verify_says_who_the_token_is_and_what_is_wrong(x_account, x_server):
    account = Account.objects.get(name="brand-x")
    platform = platform_get("x")
    identity = platform.verify(account=account, credentials={"access_token": TOKEN}, timeout=5)
    assert (identity.handle, identity.remote_id, identity.url) == (f"@{USERNAME}", USER_ID, f"https://x.com/{USERNAME}")
    with pytest.raises(AccountCheckFailed) as raised:
        platform.verify(account=account, credentials={"access_token": "expired"}, timeout=5)
    assert "refused to read who the token is: 401" in str(raised.value) and "expired, revoked" in str(raised.value)
    with pytest.raises(AccountCheckFailed) as raised:
        platform.verify(account=account, credentials={"access_token": TOKEN, "username": "someone"}, timeout=5)
    assert f"set username to {USERNAME!r}" in str(raised.value)
    x_server.stop()
    with pytest.raises(AccountCheckFailed) as raised:
        platform.verify(account=account, credentials={"access_token": TOKEN}, timeout=5)
    assert "Could not reach X at http://127.0.0.1:" in str(raised.value) and "check the base URL" in str(raised.value)


def test_x__without_a_username_the_url_is_xs_redirecting_one(settings, x_server):
    settings.AOL_CREDENTIALS_KEYS = [KEY]
    settings.AOL_APPROVAL_REQUIRED_TYPES = []
    account_add(
        name="brand-x", platform="x", base_url=x_server.base_url, credentials={"access_token": TOKEN}, actor="o"
    )
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.remote_url == f"https://x.com/i/web/status/{action.remote_id}"


def test_x__no_answer_before_the_attempts_deadline_is_an_unknown_outcome(x_account, x_server):
    x_server.script.append("hang")
    account = Account.objects.get(name="brand-x")
    platform = platform_get("x")
    spec = PostSpec(text=TEXT, idempotency_key="k", created_at=timezone.now())
    with pytest.raises(OutcomeUnknown) as raised:
        platform.publish(
            account=account,
            credentials={"access_token": TOKEN},
            request=platform.build_request(account=account, spec=spec),
            spec=spec,
            attempt=Attempt(idempotency_key="k", proof=False, deadline=time.monotonic() + 0.5),
        )
    assert "no answer within" in str(raised.value) and "the post may have been made" in str(raised.value)


def test_x__answer_lost_and_the_lookup_fails__parked_for_review_saying_why(x_account, x_server):
    x_server.script.append("drop")
    x_server.lookup_fault = 503
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.NEEDS_REVIEW, 1)
    assert "looking it up failed" in action.last_error and "answered 503" in action.last_error
    assert len(posted(x_server)) == 1 and len(x_server.live_posts()) == 1  # it is out: a person resolves it


# --- Token refresh ----------------------------------------------------------------------------------------------------
SECRETS = (TOKEN, REFRESH_TOKEN, CLIENT_SECRET)


def test_x__an_expired_token_is_refreshed_on_401_the_post_made_once_and_the_new_tokens_stored(x_refreshable, x_server):
    x_server.expire()
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.SUCCESS, 1), action.last_error
    [post] = x_server.live_posts()
    first, second = posted(x_server)  # refused (401: nothing made), then repeated with the new token
    assert first.headers["authorization"] == f"Bearer {TOKEN}" and first.body == second.body
    assert second.headers["authorization"] == "Bearer x-access-refreshed-1-canary"
    [refresh] = x_server.token_requests()
    assert refresh.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert "authorization" not in refresh.headers  # a public client: its id in the body
    assert parse_qs(refresh.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [REFRESH_TOKEN],
        "client_id": [CLIENT_ID],
    }
    now = stored()
    assert (now["access_token"], now["refresh_token"]) == ("x-access-refreshed-1-canary", "x-refresh-rotated-1-canary")
    assert 7100 <= float(now["expires_at"]) - time.time() <= 7200
    assert (now["username"], now["client_id"]) == (USERNAME, CLIENT_ID)
    assert Account.objects.get(name="brand-x").credential_fields == sorted(now)
    audit = AuditEntry.objects.get(verb="update account credentials")
    assert audit.target == "account brand-x" and audit.after["changed"] == [
        "access_token",
        "expires_at",
        "refresh_token",
    ]
    log = ExecutionLog.objects.filter(action_id=action.pk).last()
    for text in (str(audit.before), str(audit.after), audit.reason, log.message):
        assert not any(secret in text for secret in (*SECRETS, now["access_token"], now["refresh_token"]))
    # The next post uses the stored tokens: no refresh, and the used refresh token is never sent again.
    other = enqueue("x-2", message="A second post")
    tick(1)
    other.refresh_from_db()
    assert other.status == ActionStatus.SUCCESS, other.last_error
    assert posted(x_server)[-1].headers["authorization"] == "Bearer x-access-refreshed-1-canary"
    assert len(x_server.token_requests()) == 1 and len(x_server.live_posts()) == 2


def test_x__a_token_about_to_expire_is_refreshed_before_the_call_with_the_confidential_clients_basic_auth(
    settings, x_server
):
    settings.AOL_CREDENTIALS_KEYS = [KEY]
    settings.AOL_APPROVAL_REQUIRED_TYPES = []
    x_server.client_secret = CLIENT_SECRET
    account_add(
        name="brand-x",
        platform="x",
        base_url=x_server.base_url,
        credentials={
            "access_token": TOKEN,
            "refresh_token": REFRESH_TOKEN,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "expires_at": str(int(time.time()) + 30),  # within the minute's margin
        },
        actor="ops",
    )
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    [only] = posted(x_server)  # no 401 round trip
    assert only.headers["authorization"] == "Bearer x-access-refreshed-1-canary"
    [refresh] = x_server.token_requests()
    assert refresh.headers["authorization"].startswith("Basic ")
    assert parse_qs(refresh.body.decode()) == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH_TOKEN]}
    assert stored()["client_secret"] == CLIENT_SECRET and stored()["refresh_token"] == "x-refresh-rotated-1-canary"


def test_x__a_refused_refresh_goes_to_the_dlq_saying_to_authorize_again_and_quotes_no_token(x_refreshable, x_server):
    x_server.expire()
    x_server.refresh_tokens.clear()  # the refresh token was used (or revoked): X answers 400, echoing it
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.DLQ, 1)
    assert "refused to refresh account 'brand-x''s access token: 400 invalid_request" in action.last_error
    assert "authorize the app again" in action.last_error and "offline.access" in action.last_error
    assert "<redacted>" in action.last_error  # X's answer echoed the refresh token; it was blanked out
    assert not any(secret in action.last_error for secret in SECRETS)
    assert len(posted(x_server)) == 1 and x_server.live_posts() == []
    assert stored()["refresh_token"] == REFRESH_TOKEN  # nothing stored
    assert not AuditEntry.objects.filter(verb="update account credentials").exists()


def test_x__a_failing_token_endpoint_is_retried(x_refreshable, x_server):
    x_server.expire()
    x_server.token_fault = 503
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRY and "try again later" in action.last_error
    assert x_server.live_posts() == [] and stored()["refresh_token"] == REFRESH_TOKEN


def test_x__a_refresh_failing_during_the_lookup_after_a_lost_answer_parks_for_review_never_retries(
    x_refreshable, x_server
):
    x_server.script.append("drop")  # stored, no answer: the lookup runs
    x_server.expire_after_post = True  # and meets a 401
    x_server.token_fault = 503  # whose refresh fails
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.NEEDS_REVIEW, 1), action.last_error
    assert "looking it up failed" in action.last_error and "503" in action.last_error
    assert len(posted(x_server)) == 1 and len(x_server.live_posts()) == 1


def test_x__verify_and_retract_refresh_too_and_verify_says_when_the_refresh_is_refused(x_refreshable, x_server):
    x_server.expire()
    action = enqueue()
    tick()  # refreshed on the post's 401
    action.refresh_from_db()
    x_server.expire("x-access-refreshed-1-canary")
    account = Account.objects.get(name="brand-x")
    platform_get("x").retract(account=account, credentials=stored(), remote_id=action.remote_id, timeout=5)
    assert x_server.live_posts() == [] and len(x_server.token_requests()) == 2
    x_server.expire("x-access-refreshed-2-canary")
    x_server.refresh_tokens.clear()
    with pytest.raises(AccountCheckFailed) as raised:
        account_verify(account=account)
    message = str(raised.value)
    assert "refused to refresh account 'brand-x''s access token: 400" in message and "authorize the app" in message
    assert not any(secret in message for secret in (*SECRETS, *stored().values()) if "canary" in secret)


def test_x__without_a_refresh_token_an_expired_token_is_todays_401_advice(x_account, x_server):
    x_server.expire()
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.DLQ, 1)
    assert "refused to post: 401" in action.last_error
    assert "The access token is expired, revoked or not a user token" in action.last_error
    assert x_server.token_requests() == [] and TOKEN not in action.last_error


def test_x__a_second_refresher_with_the_used_refresh_token_takes_the_stored_tokens_instead(x_refreshable, x_server):
    """The daemon and an admin Verify both read the credentials, then both meet a 401: one refresh reaches X."""
    x_server.expire()
    account = Account.objects.get(name="brand-x")
    platform = platform_get("x")
    daemons, verifys = stored(), stored()
    assert platform.verify(account=account, credentials=daemons, timeout=5).handle == f"@{USERNAME}"
    assert platform.verify(account=account, credentials=verifys, timeout=5).handle == f"@{USERNAME}"
    assert len(x_server.token_requests()) == 1 and x_server.used_refresh_tokens == {REFRESH_TOKEN}
    assert daemons == verifys == stored() and verifys["access_token"] == "x-access-refreshed-1-canary"


def test_x__two_refreshers_at_once_wait_for_each_other_and_send_one_refresh(x_refreshable, x_server):
    """Two threads, each on its own database connection, meet the 401 together; the token endpoint is slow."""
    x_server.expire()
    x_server.token_delay = 0.5
    platform = platform_get("x")
    results, errors = [], []
    both_read = threading.Barrier(2, timeout=10)

    def verify() -> None:
        try:
            account, credentials = Account.objects.get(name="brand-x"), stored()
            both_read.wait()  # both hold the expired token and the same refresh token
            results.append(platform.verify(account=account, credentials=credentials, timeout=10).handle)
        except Exception as exc:  # shown by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=verify) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and results == [f"@{USERNAME}"] * 2
    expired = [r for r in x_server.received("GET", "/2/users/me") if r.headers["authorization"] == f"Bearer {TOKEN}"]
    assert len(expired) == 2  # both met the 401
    assert len(x_server.token_requests()) == 1 and stored()["refresh_token"] == "x-refresh-rotated-1-canary"
