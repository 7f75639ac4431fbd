"""Mastodon: text as Mastodon counts it, the exact request as PROOF, and REAL against a local instance on 127.0.0.1."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from orchestration.adapters import adapter_get
from orchestration.adapters.artifacts import artifact_path
from orchestration.adapters.base import Attempt
from orchestration.adapters.platforms import PLATFORMS, PostSpec
from orchestration.adapters.platforms.mastodon import mastodon_idempotency_key
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import (
    AccountCheckFailed,
    AccountRateLimited,
    InvalidPayload,
    OutcomeUnknown,
    PermanentAdapterError,
)
from orchestration.models import Account, Action, ActionStatus, ExecutionLog
from orchestration.services.accounts import account_add
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.platform_servers.mastodon import READ_ONLY_TOKEN, TOKEN

# On SQLite only: what these tests exercise is HTTP against a local instance; recording outcomes
# through a real daemon is tests/adapters/test_mastodon_daemon.py's part, on both databases.
# transaction=True: the daemon runs the adapter on a worker thread (its own connection), which reads the account.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

MASTODON = PLATFORMS["mastodon"]
MESSAGE = "Spring launch — read more at https://example.com/launch?utm_source=aol 🚀 cc @ann@social.example"


@pytest.fixture
def keys(settings):
    settings.AOL_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    settings.AOL_APPROVAL_REQUIRED_TYPES = []
    return settings


@pytest.fixture
def account(keys, mastodon_server):
    return account_add(
        name="brand-main",
        platform="mastodon",
        base_url=mastodon_server.url,
        credentials={"access_token": TOKEN},
        actor="test",
    )


def enqueue(key: str = "post-1", message: str = MESSAGE) -> Action:
    payload = {"platform": "mastodon", "account": "brand-main", "message": message}
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload=payload, idempotency_key=key)
    return action


def tick(number: int = 0, *, real: bool = True) -> None:
    control_set_proof_mode(enabled=not real, actor="ops", reason="mastodon test")
    Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None).tick(number)


def make_due(action: Action) -> None:
    Action.objects.filter(pk=action.pk).update(not_before=timezone.now() - timedelta(seconds=1))


def spec(text: str = MESSAGE, key: str = "post-1") -> PostSpec:
    return PostSpec(text=text, idempotency_key=key, created_at=timezone.now())


# -- text as Mastodon counts it


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("hello", 5),
        ("https://example.com/" + "a" * 200, 23),  # any URL is 23
        ("see https://example.com/x.", 4 + 23 + 1),  # the final full stop is not part of the URL
        ("hi @ann@very-long-instance-name.example", 3 + 4),  # only @ann counts
        ("hi @ann", 7),
        ("mail ann@example.com", 20),  # an address is no mention
        ("👍🏽 🇩🇪 e\u0301 👩‍👩‍👧", 7),  # one per user-perceived character
    ],
)
def test_text_count__urls_are_23_mentions_count_the_username_and_graphemes_count_once(text, count):
    assert MASTODON.text_count(text).count == count


def test_text_count__a_long_url_does_not_make_a_message_too_long_but_501_characters_do(keys):
    fits = "x" * 476 + " https://example.com/" + "p" * 600  # 476 + 1 + 23 = 500
    assert MASTODON.text_count(fits).count == 500 and MASTODON.text_problems(fits) == []
    [problem] = MASTODON.text_problems("x" * 501)
    assert "counts 501 characters as Mastodon counts them" in problem and "at most 500" in problem


def test_enqueue__a_message_too_long_for_mastodon_is_refused_and_nothing_is_queued(account):
    with pytest.raises(InvalidPayload) as raised:
        enqueue(message="é" * 501)
    assert "Mastodon allows at most 500" in str(raised.value)
    assert not Action.objects.exists()


# -- PROOF: the exact request


def test_proof__renders_the_exact_request_without_the_token(account, mastodon_server):
    action = enqueue()
    tick(real=False)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS and mastodon_server.requests == []
    log = ExecutionLog.objects.get(action_id=action.pk)
    artifact = artifact_path(log.artifact_ref).read_bytes()
    head, body = artifact.split(b"\n\n", 1)
    lines = head.decode().split("\n")
    assert lines[0] == f"POST {mastodon_server.url}/api/v1/statuses"
    assert f"Idempotency-Key: {mastodon_idempotency_key('post-1')}" in lines
    assert "Content-Type: application/x-www-form-urlencoded" in lines and f"Content-Length: {len(body)}" in lines
    assert lines[-1] == "Authorization: <the account's credentials, added at sending>"
    assert body.startswith(b"status=Spring+launch+%E2%80%94+read+more+at+https%3A%2F%2Fexample.com%2Flaunch")
    assert TOKEN.encode() not in artifact
    assert adapter_get("POST_SOCIAL").proof_render(action).content == artifact  # a re-render is byte-identical


# -- REAL


def test_real__posts_once_sending_exactly_the_rendered_bytes_and_records_id_and_url(account, mastodon_server):
    action = enqueue()
    rendered = adapter_get("POST_SOCIAL").proof_render(action).content
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    [received] = mastodon_server.requests
    head, body = rendered.split(b"\n\n", 1)
    assert received.body == body and (received.method, received.path) == ("POST", "/api/v1/statuses")
    for line in head.decode().split("\n")[1:-1]:  # every header but Authorization's placeholder
        name, value = line.split(": ", 1)
        assert received.headers[name.lower()] == value
    assert received.headers["authorization"] == f"Bearer {TOKEN}"
    [post] = mastodon_server.posts
    assert post.text == MESSAGE
    assert (action.remote_id, action.remote_url) == (post.id, mastodon_server.status_url(post.id))
    log = ExecutionLog.objects.get(action_id=action.pk)
    assert f"REAL: posted to Mastodon as brand-main, id {post.id}" in log.message and TOKEN not in log.message


def test_real__a_connection_dropped_after_the_post_was_stored__the_retry_posts_nothing_more(account, mastodon_server):
    mastodon_server.script.append("drop")
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRY and action.last_error.startswith("OutcomeUnknown: ")
    assert "outcome unknown, so the retry sends the same Idempotency-Key" in action.last_error
    assert len(mastodon_server.posts) == 1  # it did arrive
    make_due(action)
    tick(1)
    action.refresh_from_db()
    [post] = mastodon_server.posts
    assert (action.status, action.remote_id) == (ActionStatus.SUCCESS, post.id)
    first, second = mastodon_server.post_requests()
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] and first.body == second.body


def test_real__429_defers_the_account_until_x_ratelimit_reset(account, mastodon_server):
    reset = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=240)
    mastodon_server.script.append(
        (429, {"X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.000000Z"), "X-RateLimit-Remaining": "0"})
    )
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)  # not counted: the account waits
    assert "(attempt not counted): AccountRateLimited: " in action.deferred_note
    assert "answered 429" in action.deferred_note
    assert abs((action.not_before - reset).total_seconds()) <= 5
    assert mastodon_server.posts == []


def test_publish__429_names_the_account_and_the_seconds_to_the_reset(account, mastodon_server):
    reset = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=120)
    mastodon_server.script.append((429, {"X-RateLimit-Reset": reset.isoformat().replace("+00:00", "Z")}))
    request = MASTODON.build_request(account=account, spec=spec())
    with pytest.raises(AccountRateLimited) as raised:
        MASTODON.publish(
            account=account, credentials={"access_token": TOKEN}, request=request, spec=spec(), attempt=Attempt("k")
        )
    assert raised.value.account == "brand-main"
    assert 110 <= raised.value.retry_after_seconds <= 121


@pytest.mark.parametrize(
    ("token", "advice"),
    [
        ("revoked-token", "was refused (revoked, expired or mistyped)"),
        (READ_ONLY_TOKEN, "lacks the scope write:statuses"),
    ],
)
def test_real__401_and_403_go_to_the_dlq_at_once_saying_what_to_fix(keys, mastodon_server, token, advice):
    account_add(
        name="brand-main", platform="mastodon", base_url=mastodon_server.url, credentials={"access_token": token},
        actor="test",
    )  # fmt: skip
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.DLQ, 1)
    assert advice in action.last_error and "Preferences → Development" in action.last_error
    assert token not in action.last_error and mastodon_server.posts == []


def test_real__500_is_retried_and_the_retry_posts_once(account, mastodon_server):
    mastodon_server.script.append(500)
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.RETRY, 1)
    assert action.last_error.startswith("TransientAdapterError: ") and "answered 500" in action.last_error
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.SUCCESS, 2)
    assert len(mastodon_server.posts) == 1


def test_real__an_instance_that_does_not_answer_in_time_is_retried_with_the_same_key(keys, account, mastodon_server):
    keys.AOL_ACTION_TYPES = {"POST_SOCIAL": {"timeout_seconds": 3}}  # the client gives up at 90% of it
    mastodon_server.script.append("hang")
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRY and mastodon_server.posts == []
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    assert len(mastodon_server.posts) == 1
    first, second = mastodon_server.post_requests()
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


def test_publish__a_read_timeout_is_an_unknown_outcome(account, mastodon_server):
    mastodon_server.script.append("hang")
    request = MASTODON.build_request(account=account, spec=spec())
    attempt = Attempt("k", deadline=time.monotonic() + 0.5)
    with pytest.raises(OutcomeUnknown) as raised:
        MASTODON.publish(
            account=account, credentials={"access_token": TOKEN}, request=request, spec=spec(), attempt=attempt
        )
    assert "ReadTimeout" in str(raised.value) and mastodon_server.posts == []


def test_publish__nothing_is_sent_when_the_request_is_not_the_approved_one(account, mastodon_server):
    approved = MASTODON.build_request(account=account, spec=spec("the approved text"))
    with pytest.raises(PermanentAdapterError) as raised:
        MASTODON.publish(
            account=account, credentials={"access_token": TOKEN}, request=approved, spec=spec("another text"),
            attempt=Attempt("k"),
        )  # fmt: skip
    assert "nothing was sent" in str(raised.value) and "the body differs" in str(raised.value)
    assert mastodon_server.requests == []


def test_publish__a_redirect_is_not_followed_and_says_to_fix_the_base_url(account, mastodon_server):
    mastodon_server.script.append((301, {"Location": "https://social.example/api/v1/statuses"}))
    request = MASTODON.build_request(account=account, spec=spec())
    with pytest.raises(PermanentAdapterError) as raised:
        MASTODON.publish(
            account=account, credentials={"access_token": TOKEN}, request=request, spec=spec(), attempt=Attempt("k")
        )
    assert "answered 301 pointing to https://social.example; redirects are not followed" in str(raised.value)
    assert len(mastodon_server.requests) == 1 and mastodon_server.posts == []


# -- retract and verify


def test_retract__deletes_the_status_and_a_second_retract_is_harmless(account, mastodon_server):
    action = enqueue()
    tick()
    action.refresh_from_db()
    credentials = {"access_token": TOKEN}
    MASTODON.retract(account=account, credentials=credentials, remote_id=action.remote_id, timeout=5)
    assert mastodon_server.posts == [] and len(mastodon_server.statuses) == 1
    assert mastodon_server.requests[-1].method == "DELETE"
    assert mastodon_server.requests[-1].path == f"/api/v1/statuses/{action.remote_id}"
    MASTODON.retract(account=account, credentials=credentials, remote_id=action.remote_id, timeout=5)  # 404: gone


def test_verify__says_who_the_token_acts_as(account, mastodon_server):
    identity = MASTODON.verify(account=account, credentials={"access_token": TOKEN}, timeout=5)
    assert identity.handle == f"@brand@127.0.0.1:{mastodon_server.port}"
    assert identity.url == f"{mastodon_server.url}/@brand" and identity.remote_id


def test_verify__a_bad_token_is_named(account):
    with pytest.raises(AccountCheckFailed) as raised:
        MASTODON.verify(account=account, credentials={"access_token": "nope-token"}, timeout=5)
    assert "refused the access token (401" in str(raised.value) and "nope-token" not in str(raised.value)


def test_verify__a_missing_scope_is_named(keys, mastodon_server):
    account = Account(name="reader", platform="mastodon", base_url=mastodon_server.url)
    from tests.platform_servers import mastodon as server_module

    server_module.TOKENS["no-scope-token"] = {"write:statuses"}
    try:
        with pytest.raises(AccountCheckFailed) as raised:
            MASTODON.verify(account=account, credentials={"access_token": "no-scope-token"}, timeout=5)
    finally:
        del server_module.TOKENS["no-scope-token"]
    assert "lacks the scope read:accounts (403)" in str(raised.value)


def test_verify__a_wrong_url_is_named(keys, mastodon_server):
    refused = Account(name="gone", platform="mastodon", base_url=mastodon_server.url)
    mastodon_server.stop()
    with pytest.raises(AccountCheckFailed) as raised:
        MASTODON.verify(account=refused, credentials={"access_token": TOKEN}, timeout=5)
    assert "Could not reach Mastodon at" in str(raised.value) and "wrong base URL" in str(raised.value)


def test_verify__a_url_without_a_mastodon_api_is_named(keys, webhook_server):
    # Another HTTP server (the webhook receiver) answers, but not as Mastodon: 404 on every GET.
    other = Account(name="other", platform="mastodon", base_url=f"http://127.0.0.1:{webhook_server.port}")
    with pytest.raises(AccountCheckFailed) as raised:
        MASTODON.verify(account=other, credentials={"access_token": TOKEN}, timeout=5)
    assert "has no Mastodon API" in str(raised.value) and "wrong base URL" in str(raised.value)
