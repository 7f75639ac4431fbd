"""Bluesky: text rules, facets, the exact createRecord request as PROOF, and REAL against a local PDS on 127.0.0.1."""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from orchestration.adapters import adapter_get
from orchestration.adapters.artifacts import artifact_path
from orchestration.adapters.base import Attempt
from orchestration.adapters.platforms import PostSpec, platform_get
from orchestration.adapters.platforms.base import AUTHORIZATION_PLACEHOLDER
from orchestration.adapters.platforms.bluesky import _sessions, bluesky_facets, bluesky_graphemes, bluesky_rkey
from orchestration.credentials import account_credentials
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import AccountCheckFailed, AccountRateLimited, InvalidPayload, OutcomeUnknown
from orchestration.models import Action, ActionStatus, ExecutionLog
from orchestration.services.accounts import account_add
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.platform_servers.bluesky import APP_PASSWORD, DID, HANDLE, PEOPLE, TID

# transaction=True: the daemon runs adapters in a worker thread, which reads the account on its own
# connection. On SQLite only: what these tests exercise is HTTP against a local PDS; recording the outcomes on
# both databases is tests/commands/test_bluesky_daemon.py's part.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

BLUESKY = platform_get("bluesky")


@pytest.fixture(autouse=True)
def no_cached_sessions():
    _sessions.clear()
    yield
    _sessions.clear()


@pytest.fixture
def account(settings, bluesky_server):
    settings.AOL_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    settings.AOL_APPROVAL_REQUIRED_TYPES = []
    return account_add(
        name="brand-sky",
        platform="bluesky",
        base_url=bluesky_server.url,
        credentials={"identifier": HANDLE, "app_password": APP_PASSWORD},
        actor="test",
    )


def enqueue(message: str = "Spring sale: 20% off at https://shop.example/spring #spring", key: str = "sky-1"):
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "bluesky", "account": "brand-sky", "message": message},
        idempotency_key=key,
    )
    return action


def tick(number: int = 0, *, real: bool = True) -> None:
    control_set_proof_mode(enabled=not real, actor="ops", reason="bluesky test")
    Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None).tick(number)


def make_due(action: Action) -> None:
    Action.objects.filter(pk=action.pk).update(not_before=timezone.now() - timedelta(seconds=1))


def rendered(action: Action) -> bytes:
    return adapter_get("POST_SOCIAL").proof_render(action).content


# --- text rules ---------------------------------------------------------------------------


def test_graphemes__emoji_sequences_count_as_one_each_as_bluesky_counts():
    assert bluesky_graphemes("👍🏽") == 1  # skin tone modifier
    assert bluesky_graphemes("👨‍👩‍👧‍👦") == 1  # a ZWJ family
    assert bluesky_graphemes("🇫🇷🇩🇪") == 2  # two flags
    assert bluesky_graphemes("é") == 1 and bluesky_graphemes("e\u0301") == 1  # composed or not
    assert BLUESKY.text_count("Hé 👍🏽").count == 4


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("👍🏽" * 301, "'message' is 301 graphemes; Bluesky allows at most 300"),
        ("a" * 301, "'message' is 301 graphemes; Bluesky allows at most 300"),
        # 121 family emoji: 121 graphemes, but 3025 bytes of UTF-8
        ("👨‍👩‍👧‍👦" * 121, "'message' is 3025 bytes of UTF-8; Bluesky allows at most 3000"),
    ],
)
def test_text__over_bluskys_limits_is_refused_at_enqueue_and_nothing_is_queued(message, error):
    with pytest.raises(InvalidPayload) as raised:
        action_enqueue(action_type="POST_SOCIAL", payload={"platform": "bluesky", "message": message})
    assert error in str(raised.value)
    assert not Action.objects.exists()


def test_text__300_emoji_with_modifiers_fit():
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload={"platform": "bluesky", "message": "👍🏽" * 300})
    assert action.pk


def test_facets__links_tags_and_mentions_have_utf8_byte_offsets():
    text = "Héllo 👋🏽 @alice.bsky.social: see https://shop.example/a_(b). #Frühling! and $AAPL"
    facets = bluesky_facets(text, resolve=PEOPLE.get)
    data = text.encode("utf-8")
    found = [
        (data[f.index.byte_start : f.index.byte_end].decode(), f.features[0].model_dump(by_alias=True)) for f in facets
    ]
    assert found == [
        ("@alice.bsky.social", {"did": PEOPLE["alice.bsky.social"], "$type": "app.bsky.richtext.facet#mention"}),
        ("https://shop.example/a_(b)", {"uri": "https://shop.example/a_(b)", "$type": "app.bsky.richtext.facet#link"}),
        ("#Frühling", {"tag": "Frühling", "$type": "app.bsky.richtext.facet#tag"}),
        ("$AAPL", {"tag": "$AAPL", "$type": "app.bsky.richtext.facet#tag"}),
    ]


def test_facets__a_mention_that_does_not_resolve_stays_plain_text_and_an_email_is_no_mention():
    text = "thanks @nobody.bsky.social, mail ann@example.com"
    assert bluesky_facets(text, resolve=PEOPLE.get) == []


def test_rkey__a_tid_from_the_actions_time_and_key_the_same_on_every_call():
    when = datetime(2026, 12, 1, 6, 0, 0, 123456, tzinfo=UTC)
    key = bluesky_rkey(idempotency_key="sky-1", created_at=when)
    assert TID.match(key) and key == bluesky_rkey(idempotency_key="sky-1", created_at=when)
    assert key != bluesky_rkey(idempotency_key="sky-2", created_at=when)
    assert key < bluesky_rkey(idempotency_key="sky-1", created_at=when + timedelta(microseconds=1))  # sorts by time


# --- PROOF and REAL -----------------------------------------------------------------------


def test_proof__writes_the_exact_createrecord_request_without_any_secret(account, bluesky_server):
    action = enqueue("Hi @alice.bsky.social 👋🏽 https://shop.example/spring #spring")
    tick(real=False)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    assert bluesky_server.calls("com.atproto.repo.createRecord") == []
    assert bluesky_server.calls("com.atproto.server.createSession") == []  # PROOF never signs in
    artifact = artifact_path(ExecutionLog.objects.get(action_id=action.pk).artifact_ref).read_bytes()
    head, body = artifact.split(b"\n\n", 1)
    assert head.decode().split("\n") == [
        f"POST {bluesky_server.url}/xrpc/com.atproto.repo.createRecord",
        "Content-Type: application/json",
        f"Authorization: {AUTHORIZATION_PLACEHOLDER}",
    ]
    sent = json.loads(body)
    rkey = bluesky_rkey(idempotency_key="sky-1", created_at=action.created_at)
    assert {k: sent[k] for k in ("repo", "collection", "rkey")} == {
        "repo": HANDLE,
        "collection": "app.bsky.feed.post",
        "rkey": rkey,
    }
    record = sent["record"]
    assert record["$type"] == "app.bsky.feed.post" and record["text"] == action.payload["message"]
    assert record["createdAt"] == action.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert [f["features"][0]["$type"].rsplit("#", 1)[1] for f in record["facets"]] == ["mention", "link", "tag"]
    assert record["facets"][0]["features"][0]["did"] == PEOPLE["alice.bsky.social"]
    assert APP_PASSWORD.encode() not in artifact
    assert rendered(action) == artifact  # a re-render writes the same bytes


def test_real__sends_exactly_the_rendered_body_once_and_records_the_uri_and_url(account, bluesky_server):
    action = enqueue()
    expected = rendered(action)
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    [create] = bluesky_server.calls("com.atproto.repo.createRecord")
    head, body = expected.split(b"\n\n", 1)
    assert create.body == body and create.method == "POST"
    assert create.headers["content-type"] == "application/json"
    assert create.headers["authorization"].startswith("Bearer ")
    [(rkey, record)] = bluesky_server.records.items()
    assert action.remote_id == f"at://{DID}/app.bsky.feed.post/{rkey}" == record["uri"]
    assert action.remote_url == f"https://bsky.app/profile/{HANDLE}/post/{rkey}"
    [session] = bluesky_server.calls("com.atproto.server.createSession")
    assert json.loads(session.body) == {"identifier": HANDLE, "password": APP_PASSWORD}
    log = ExecutionLog.objects.filter(action_id=action.pk).last()
    assert "REAL: posted to Bluesky as brand-sky" in log.message and APP_PASSWORD not in log.message


def test_real__dropped_after_the_pds_stored_it__the_retry_finds_it_and_there_is_one_post(account, bluesky_server):
    bluesky_server.faults["com.atproto.repo.createRecord"].append("drop")
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRY, action.last_error
    assert action.last_error.startswith("OutcomeUnknown: Bluesky (") and "outcome unknown" in action.last_error
    assert len(bluesky_server.records) == 1  # it did arrive
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    [(rkey, record)] = bluesky_server.records.items()
    assert action.remote_id == record["uri"]
    assert len(bluesky_server.calls("com.atproto.repo.createRecord")) == 1  # the retry looked it up, wrote nothing
    assert bluesky_server.calls("com.atproto.repo.getRecord")[-1].path.endswith("getRecord")


def test_real__a_500_is_retried_and_the_retry_posts_once(account, bluesky_server):
    bluesky_server.faults["com.atproto.repo.createRecord"].append(500)
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.RETRY, 1)
    assert "createRecord answered 500" in action.last_error
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS and len(bluesky_server.records) == 1


def test_real__429_defers_the_account_until_the_ratelimit_reset(account, bluesky_server):
    reset = int(time.time()) + 120
    bluesky_server.faults["com.atproto.repo.createRecord"].append(
        (429, {"RateLimit-Reset": str(reset), "RateLimit-Remaining": "0"})
    )
    action = enqueue()
    spec = PostSpec(text=action.payload["message"], idempotency_key="sky-1", created_at=action.created_at)
    with pytest.raises(AccountRateLimited) as raised:
        BLUESKY.publish(
            account=account,
            credentials=account_credentials(account=account),
            request=BLUESKY.build_request(account=account, spec=spec),
            spec=spec,
            attempt=Attempt(idempotency_key="sky-1", proof=False),
        )
    assert raised.value.account == "brand-sky" and 110 <= raised.value.retry_after_seconds <= 121
    assert "createRecord answered 429 (RateLimitExceeded" in str(raised.value)
    bluesky_server.faults["com.atproto.repo.createRecord"].append((429, {"RateLimit-Reset": str(reset)}))
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)  # not counted: the account waits
    assert "(attempt not counted): AccountRateLimited: " in action.deferred_note
    assert 110 <= (action.not_before - timezone.now()).total_seconds() <= 121
    assert bluesky_server.records == {}


def test_real__a_refused_app_password_is_permanent_with_what_to_do_and_is_never_shown(
    settings, account, bluesky_server
):
    from orchestration.services.accounts import account_change

    account_change(
        name="brand-sky",
        actor="ops",
        reason="test",
        credentials={"identifier": HANDLE, "app_password": "wrong-CANARY-pass"},
    )
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.DLQ, 1)
    assert "createSession answered 401 (AuthenticationRequired: Invalid identifier or password)" in action.last_error
    assert "App passwords" in action.last_error and "aol_accounts change brand-sky" in action.last_error
    assert "wrong-CANARY-pass" not in action.last_error and bluesky_server.records == {}


def test_real__an_expired_session_is_dropped_and_the_retry_signs_in_again(account, bluesky_server):
    first = enqueue(key="one")
    tick(0)
    first.refresh_from_db()
    assert first.status == ActionStatus.SUCCESS
    bluesky_server.expire_sessions()
    second = enqueue("a second post", key="two")
    tick(1)
    second.refresh_from_db()
    assert second.status == ActionStatus.RETRY and "the session expired (InvalidToken" in second.last_error
    make_due(second)
    tick(2)
    second.refresh_from_db()
    assert second.status == ActionStatus.SUCCESS, second.last_error
    assert len(bluesky_server.records) == 2 and len(bluesky_server.calls("com.atproto.server.createSession")) == 2


def test_retract__deletes_the_record_and_a_second_retract_is_harmless(account, bluesky_server):
    action = enqueue()
    tick()
    action.refresh_from_db()
    credentials = account_credentials(account=account)
    BLUESKY.retract(account=account, credentials=credentials, remote_id=action.remote_id, timeout=5)
    assert bluesky_server.records == {} and bluesky_server.deleted == [action.remote_id]
    BLUESKY.retract(account=account, credentials=credentials, remote_id=action.remote_id, timeout=5)
    [first, _] = bluesky_server.calls("com.atproto.repo.deleteRecord")
    assert json.loads(first.body) == {
        "collection": "app.bsky.feed.post",
        "repo": DID,
        "rkey": action.remote_id.rsplit("/", 1)[1],
    }


# --- verify -------------------------------------------------------------------------------


def test_verify__says_who_the_app_password_acts_as(account):
    identity = BLUESKY.verify(account=account, credentials=account_credentials(account=account), timeout=5)
    assert (identity.handle, identity.remote_id, identity.url) == (HANDLE, DID, f"https://bsky.app/profile/{HANDLE}")


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("password", "refused the identifier or app password (AuthenticationRequired: Invalid identifier or password)"),
        ("url", "has no AT Protocol API (createSession answered 404): check the account's base URL"),
        ("down", "Could not reach http://127.0.0.1:"),
        ("fields", "needs the credentials"),
    ],
)
def test_verify__says_clearly_what_is_wrong(account, bluesky_server, case, problem):
    credentials = {"identifier": HANDLE, "app_password": APP_PASSWORD}
    if case == "password":
        credentials["app_password"] = "wrong-CANARY-pass"
    elif case == "url":
        account.base_url = bluesky_server.url + "/not-a-pds"
    elif case == "down":
        bluesky_server.stop()
    else:
        credentials = {"access_token": "x"}
    with pytest.raises(AccountCheckFailed) as raised:
        BLUESKY.verify(account=account, credentials=credentials, timeout=5)
    assert problem in str(raised.value)
    assert "wrong-CANARY-pass" not in str(raised.value) and APP_PASSWORD not in str(raised.value)


def test_real__no_answer_within_the_attempts_time_is_an_unknown_outcome_and_the_retry_posts_once(
    account, bluesky_server
):
    bluesky_server.faults["com.atproto.repo.createRecord"].append("hang")  # stores nothing, never answers
    action = enqueue()
    spec = PostSpec(text=action.payload["message"], idempotency_key="sky-1", created_at=action.created_at)
    credentials = account_credentials(account=account)
    request = BLUESKY.build_request(account=account, spec=spec)
    with pytest.raises(OutcomeUnknown) as raised:
        BLUESKY.publish(
            account=account,
            credentials=credentials,
            request=request,
            spec=spec,
            attempt=Attempt(idempotency_key="sky-1", proof=False, deadline=time.monotonic() + 1.0),
        )
    assert "no answer to createRecord (ReadTimeout" in str(raised.value)
    published = BLUESKY.publish(
        account=account,
        credentials=credentials,
        request=request,
        spec=spec,
        attempt=Attempt(idempotency_key="sky-1", proof=False, number=2),
    )
    [(rkey, record)] = bluesky_server.records.items()
    assert published.remote_id == record["uri"] and published.remote_url.endswith(f"/post/{rkey}")


def test_real__an_email_as_identifier_is_refused_saying_to_use_the_handle(account, bluesky_server):
    from orchestration.services.accounts import account_change

    account_change(
        name="brand-sky", actor="ops", reason="test", credentials={"identifier": "ann@example.com", "app_password": "x"}
    )
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ
    assert "'identifier' must be the account's handle (e.g. brand.bsky.social) or DID" in action.last_error
    assert bluesky_server.requests == []


def test_real__a_record_key_holding_another_text_is_not_taken_for_this_post(account, bluesky_server):
    action = enqueue()
    rkey = bluesky_rkey(idempotency_key="sky-1", created_at=action.created_at)
    other = {"$type": "app.bsky.feed.post", "text": "someone else's words", "createdAt": "2026-01-01T00:00:00.000Z"}
    bluesky_server.records[rkey] = {
        "uri": f"at://{DID}/app.bsky.feed.post/{rkey}",
        "cid": "bafyreiother",
        "value": other,
    }
    tick()
    action.refresh_from_db()
    assert (
        action.status == ActionStatus.DLQ and f"the record key {rkey} already holds another post" in action.last_error
    )
    assert bluesky_server.calls("com.atproto.repo.createRecord") == []
