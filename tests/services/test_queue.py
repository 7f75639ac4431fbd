"""The action queue: enqueue validation and idempotency, claiming, completion, retry, DLQ, recovery."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestration.exceptions import IdempotencyConflict, InvalidPayload, LeaseNotHeld, UnknownActionType
from orchestration.models import Action, ActionStatus, ExecutionLog, Lease
from orchestration.services.claim import action_claim_due, action_release_unstarted
from orchestration.services.enqueue import action_enqueue, action_payload_from_json
from orchestration.services.results import action_mark_failure, action_mark_success, action_recover_orphans
from tests.factories import OWNER, data_statements, hold_lease, post_social

pytestmark = pytest.mark.django_db

VALID = {"platform": "twitter", "message": "Launch day!"}


# --- enqueue -------------------------------------------------------------------------------


def test_action_enqueue__creates_pending_action():
    action, created = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    assert created
    action.refresh_from_db()
    assert (action.status, action.attempts, action.payload) == (ActionStatus.PENDING, 0, VALID)
    assert action.not_before <= timezone.now()


def test_action_enqueue__same_key_same_payload_returns_existing_row():
    first, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    second, created = action_enqueue(action_type="POST_SOCIAL", payload=dict(VALID), idempotency_key="k1")
    assert not created
    assert second.pk == first.pk
    assert Action.objects.count() == 1


def test_action_enqueue__same_key_other_payload_is_a_conflict_and_writes_nothing():
    action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict, match="k1.*different payload"):
        action_enqueue(action_type="POST_SOCIAL", payload={**VALID, "message": "other"}, idempotency_key="k1")
    assert Action.objects.get().payload == VALID


def test_action_enqueue__without_key_generates_a_distinct_one():
    a, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID)
    b, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID)
    assert a.idempotency_key != b.idempotency_key


def test_action_enqueue__not_before_in_future_is_kept():
    later = timezone.now() + timedelta(hours=1)
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID, not_before=later)
    action.refresh_from_db()
    assert action.not_before == later


@pytest.mark.parametrize(
    ("action_type", "payload", "key", "error", "message"),
    [
        ("POST_SOCIAL", ["a", "list"], None, InvalidPayload, "must be a JSON object, not list"),
        ("POST_SOCIAL", "text", None, InvalidPayload, "must be a JSON object, not str"),
        ("NOPE", VALID, None, UnknownActionType, "Unknown action type 'NOPE'; known types: .*POST_SOCIAL"),
        ("POST_SOCIAL", {"message": "hi"}, None, InvalidPayload, "'platform' is required"),
        ("POST_SOCIAL", {"platform": "twitter"}, None, InvalidPayload, "'message' is required"),
        ("POST_SOCIAL", {"platform": "", "message": "hi"}, None, InvalidPayload, "'platform' must not be empty"),
        ("POST_SOCIAL", {"platform": "twitter", "message": "  "}, None, InvalidPayload, "'message' must not be empty"),
        ("POST_SOCIAL", {"platform": "myspace", "message": "hi"}, None, InvalidPayload, "'myspace' is not supported"),
        ("POST_SOCIAL", {"platform": "twitter", "message": 5}, None, InvalidPayload, "'message' must be a str"),
        ("POST_SOCIAL", {"platform": "twitter", "message": "x" * 281}, None, InvalidPayload, "at most 280"),
        ("POST_SOCIAL", {**VALID, "extra": 1}, None, InvalidPayload, "unknown field"),
        ("POST_SOCIAL", VALID, "", InvalidPayload, "idempotency key must be a non-empty"),
        ("POST_SOCIAL", VALID, "k" * 201, InvalidPayload, "limit is 200"),
        ("POST_SOCIAL", VALID, "bad\nkey", InvalidPayload, "control characters"),
    ],
)
def test_action_enqueue__bad_input_is_rejected_with_a_clear_message_and_nothing_written(
    action_type, payload, key, error, message
):
    with pytest.raises(error, match=message):
        action_enqueue(action_type=action_type, payload=payload, idempotency_key=key)
    assert Action.objects.count() == 0


def test_action_enqueue__oversized_payload_names_the_limit(settings):
    settings.AOL_MAX_PAYLOAD_BYTES = 1000
    with pytest.raises(InvalidPayload, match=r"the limit is 1000 \(AOL_MAX_PAYLOAD_BYTES\)"):
        action_enqueue(action_type="POST_SOCIAL", payload={**VALID, "account": "a" * 2000})
    assert Action.objects.count() == 0


def test_action_enqueue__deeply_nested_payload_is_rejected():
    nested: dict = {}
    for _ in range(50):
        nested = {"n": nested}
    with pytest.raises(InvalidPayload, match="nested more than"):
        action_enqueue(action_type="POST_SOCIAL", payload={**VALID, "account": nested})
    assert Action.objects.count() == 0


def test_action_enqueue__naive_not_before_is_rejected():
    with pytest.raises(InvalidPayload, match="timezone"):
        action_enqueue(action_type="POST_SOCIAL", payload=VALID, not_before=timezone.now().replace(tzinfo=None))


@pytest.mark.django_db(transaction=True)
def test_action_enqueue__outside_a_transaction_is_one_statement_and_a_repeat_is_two(django_assert_num_queries):
    """A fresh enqueue is a single INSERT that commits on its own (no BEGIN/COMMIT round trips);
    a repeat of the key is that INSERT (which skips the row) and the look-up of the holder."""
    with django_assert_num_queries(1):
        first, created = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    assert created and Action.objects.get().pk == first.pk
    with django_assert_num_queries(2):
        again, created = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    assert (again.pk, created) == (first.pk, False)


def test_action_enqueue__returns_the_row_as_stored():
    later = timezone.now() + timedelta(minutes=5)
    for not_before in (None, later):
        action, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID, not_before=not_before, priority=7)
        stored = Action.objects.get(pk=action.pk)
        fields = [f.attname for f in Action._meta.concrete_fields]
        assert [getattr(action, name) for name in fields] == [getattr(stored, name) for name in fields]
        assert not action._state.adding


@pytest.mark.django_db(transaction=True)
def test_action_enqueue__conflict_inside_a_callers_transaction_leaves_that_transaction_usable():
    """A caller's transaction survives a refused enqueue: it can go on writing, and commits what it wrote."""
    action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    with transaction.atomic():
        action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="before")
        with pytest.raises(IdempotencyConflict, match="different payload"):
            action_enqueue(action_type="POST_SOCIAL", payload={**VALID, "message": "other"}, idempotency_key="k1")
        existing, created = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
        assert not created
        action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="after")
    assert sorted(Action.objects.values_list("idempotency_key", flat=True)) == ["after", "before", "k1"]
    assert Action.objects.get(idempotency_key="k1").payload == VALID


@pytest.mark.parametrize("text", ["{bad", "", "{'single': 'quotes'}"])
def test_action_payload_from_json__malformed_json_says_where(text):
    with pytest.raises(InvalidPayload, match="not valid JSON"):
        action_payload_from_json(text=text)


# --- claim -------------------------------------------------------------------------------------


def test_action_claim_due__takes_oldest_due_first_up_to_the_limit_and_counts_the_attempt():
    actions = [post_social(f"k{i}") for i in range(5)]
    token = hold_lease()
    claimed = action_claim_due(owner=OWNER, token=token, limit=3)
    assert [a.pk for a in claimed] == [a.pk for a in actions[:3]]
    rows = Action.objects.filter(pk__in=[a.pk for a in claimed])
    assert {(r.status, r.attempts, r.claimed_by, r.lease_token) for r in rows} == {
        (ActionStatus.RUNNING, 1, OWNER, token)
    }
    assert Action.objects.filter(status=ActionStatus.PENDING).count() == 2


def test_action_claim_due__skips_actions_not_yet_due():
    action_enqueue(action_type="POST_SOCIAL", payload=VALID, not_before=timezone.now() + timedelta(hours=1))
    due = post_social("due")
    claimed = action_claim_due(owner=OWNER, token=hold_lease(), limit=10)
    assert [a.pk for a in claimed] == [due.pk]


def test_action_claim_due__refused_with_a_stale_token():
    post_social("k")
    token = hold_lease()
    Lease.objects.update(token=token + 1)  # somebody else acquired since
    with pytest.raises(LeaseNotHeld):
        action_claim_due(owner=OWNER, token=token, limit=1)
    assert Action.objects.get().status == ActionStatus.PENDING


def test_action_claim_due__takes_one_select_and_one_update_whatever_the_batch_size():
    for i in range(3):
        post_social(f"k{i}")
    token = hold_lease()
    with CaptureQueriesContext(connection) as captured:
        action_claim_due(owner=OWNER, token=token, limit=3)
    assert data_statements(captured) == ["SELECT", "UPDATE"]


@pytest.mark.parametrize("limit", [1, 10])
def test_action_claim_due__an_action_out_of_attempts_goes_to_the_dlq_without_running(settings, limit):
    """A row written around the services (or kept while AOL_MAX_ATTEMPTS was lowered) with attempts
    at or over the limit is never run again: the claim dead-letters it and takes the next one."""
    settings.AOL_MAX_ATTEMPTS = 5
    over, at_limit, last_try, due = post_social("over"), post_social("at"), post_social("last"), post_social("due")
    Action.objects.filter(pk=over.pk).update(status=ActionStatus.RETRY, attempts=99)
    Action.objects.filter(pk=at_limit.pk).update(status=ActionStatus.RETRY, attempts=5)
    Action.objects.filter(pk=last_try.pk).update(status=ActionStatus.RETRY, attempts=4)
    token = hold_lease()
    claimed = []
    while batch := action_claim_due(owner=OWNER, token=token, limit=limit):
        claimed.extend(batch)
    assert sorted(a.pk for a in claimed) == sorted([last_try.pk, due.pk])
    rows = {a.pk: a for a in Action.objects.all()}
    assert (rows[over.pk].status, rows[over.pk].attempts) == (ActionStatus.DLQ, 99)
    assert (rows[at_limit.pk].status, rows[at_limit.pk].attempts) == (ActionStatus.DLQ, 5)
    assert (rows[last_try.pk].status, rows[last_try.pk].attempts) == (ActionStatus.RUNNING, 5)
    assert (
        rows[over.pk].last_error
        == "not run: its 99 attempts already reach the limit of 5 for POST_SOCIAL; moved to DLQ"
    )
    [log] = ExecutionLog.objects.filter(action_id=over.pk)
    assert (log.level, log.message) == ("ERROR", rows[over.pk].last_error)


def test_action_claim_due__the_attempt_limit_is_the_action_types_own(settings):
    settings.AOL_MAX_ATTEMPTS = 5
    settings.AOL_ACTION_TYPES = {"POST_SOCIAL": {"max_attempts": 2}}
    action = post_social("k")
    Action.objects.filter(pk=action.pk).update(status=ActionStatus.RETRY, attempts=2)
    assert action_claim_due(owner=OWNER, token=hold_lease(), limit=1) == []
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ
    assert action.last_error == "not run: its 2 attempts already reach the limit of 2 for POST_SOCIAL; moved to DLQ"


@pytest.mark.django_db(transaction=True)
def test_action_claim_due__concurrent_claimers_never_get_the_same_action():
    for i in range(60):
        post_social(f"k{i}")
    token = hold_lease()
    claims: list[list[int]] = [[], [], []]
    errors: list[BaseException] = []

    def claimer(bucket: list[int]) -> None:
        try:
            while batch := action_claim_due(owner=OWNER, token=token, limit=4):
                bucket.extend(a.pk for a in batch)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(bucket,)) for bucket in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    everything = [pk for bucket in claims for pk in bucket]
    assert len(everything) == len(set(everything)) == 60
    assert Action.objects.filter(status=ActionStatus.RUNNING, attempts=1).count() == 60


# --- complete, retry, DLQ ----------------------------------------------------------------------------


def _claim_one(token: int) -> Action:
    (action,) = action_claim_due(owner=OWNER, token=token, limit=1)
    return action


def test_action_mark_success__records_status_and_log_with_artifact():
    post_social("k")
    token = hold_lease()
    action = _claim_one(token)
    action_mark_success(
        action=action, token=token, actor=OWNER, message="done", artifact_ref="a.txt", artifact_sha256="ab" * 32
    )
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS
    log = ExecutionLog.objects.get(action_id=action.pk)
    assert (log.message, log.artifact_ref, log.artifact_sha256, log.actor) == ("done", "a.txt", "ab" * 32, OWNER)


def test_action_mark_failure__transient_retries_with_growing_backoff_then_dlq(settings):
    settings.AOL_RETRY_BACKOFF_SECONDS = 5
    settings.AOL_MAX_ATTEMPTS = 3
    post_social("k")
    token = hold_lease()
    for attempt in (1, 2):
        action = _claim_one(token)
        before = timezone.now()
        assert action_mark_failure(action=action, token=token, actor=OWNER, error="timeout", permanent=False) == "RETRY"
        action.refresh_from_db()
        assert action.status == ActionStatus.RETRY and action.attempts == attempt
        wait = (action.not_before - before).total_seconds()
        assert 5 * attempt - 1 < wait <= 5 * attempt + 1
        Action.objects.filter(pk=action.pk).update(not_before=timezone.now() - timedelta(seconds=1))  # due again
    action = _claim_one(token)
    assert action_mark_failure(action=action, token=token, actor=OWNER, error="timeout", permanent=False) == "DLQ"
    action.refresh_from_db()
    assert (action.status, action.attempts, action.last_error) == (ActionStatus.DLQ, 3, "timeout")
    assert "moved to DLQ (attempt 3 of 3 failed)" in ExecutionLog.objects.filter(action_id=action.pk).last().message


def test_action_mark_failure__permanent_error_goes_straight_to_dlq():
    post_social("k")
    token = hold_lease()
    action = _claim_one(token)
    assert action_mark_failure(action=action, token=token, actor=OWNER, error="bad", permanent=True) == "DLQ"
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.DLQ, 1)


def test_action_mark_success__refused_after_another_daemon_took_the_lease():
    post_social("k")
    token = hold_lease()
    action = _claim_one(token)
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    hold_lease(owner="other:2")
    with pytest.raises(LeaseNotHeld):
        action_mark_success(action=action, token=token, actor=OWNER, message="late")
    action.refresh_from_db()
    assert action.status == ActionStatus.RUNNING
    assert not ExecutionLog.objects.filter(action_id=action.pk).exists()


def test_action_release_unstarted__returns_claims_without_counting_the_attempt():
    post_social("k")
    token = hold_lease()
    action = _claim_one(token)
    assert action_release_unstarted(actions=[action], token=token) == 1
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)


# --- recovery -------------------------------------------------------------------------------------


def test_action_recover_orphans__retries_or_dead_letters_what_a_dead_holder_left_running(settings):
    settings.AOL_MAX_ATTEMPTS = 2
    fresh, spent = post_social("fresh"), post_social("spent")
    old = hold_lease(owner="dead:1")
    for _ in range(2):
        action_claim_due(owner="dead:1", token=old, limit=1)  # one at a time: each attempt surely started
    Action.objects.filter(pk=spent.pk).update(attempts=2)
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    new = hold_lease(owner="next:2")
    report = action_recover_orphans(token=new, actor="next:2")
    assert report.retried == [fresh.pk] and report.dead == [spent.pk]
    fresh.refresh_from_db()
    spent.refresh_from_db()
    assert (fresh.status, fresh.attempts) == (ActionStatus.RETRY, 1)
    assert (spent.status, spent.attempts) == (ActionStatus.DLQ, 2)
    assert "worker lost during attempt" in spent.last_error
    assert not Action.objects.filter(status=ActionStatus.RUNNING).exists()
    assert ExecutionLog.objects.filter(action_id__in=[fresh.pk, spent.pk]).count() == 2


def test_action_recover_orphans__batch_claimed_actions_go_back_uncounted_and_then_run_alone(settings):
    """A dead daemon's batch may hold actions that never started: none of them loses an attempt, even
    one on its last attempt, and as retries they are never batch-claimed again."""
    settings.AOL_MAX_ATTEMPTS = 1
    first, second = post_social("first"), post_social("second")
    old = hold_lease(owner="dead:1")
    assert len(action_claim_due(owner="dead:1", token=old, limit=5)) == 2
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    new = hold_lease(owner="next:2")

    report = action_recover_orphans(token=new, actor="next:2")

    assert report.retried == report.uncounted == [first.pk, second.pk] and report.dead == []
    for action in (first, second):
        action.refresh_from_db()
        assert (action.status, action.attempts) == (ActionStatus.RETRY, 0)
        [log] = ExecutionLog.objects.filter(action_id=action.pk)
        assert "attempt not counted" in log.message
    [alone] = action_claim_due(owner="next:2", token=new, limit=5)
    assert (alone.pk, alone.claimed_in_batch) == (first.pk, False)
    assert Action.objects.get(pk=alone.pk).attempts == 1


def test_action_claim_due__a_batch_takes_first_attempts_and_stops_before_a_retry():
    """Only first attempts share a claim; a retry (or any action a crash could harm) is claimed on its own."""
    new1, retry, new2 = post_social("new1"), post_social("retry"), post_social("new2")
    Action.objects.filter(pk=retry.pk).update(status=ActionStatus.RETRY, attempts=1)
    token = hold_lease()

    batch = action_claim_due(owner=OWNER, token=token, limit=10)
    assert [a.pk for a in batch] == [new1.pk] and batch[0].claimed_in_batch
    [alone] = action_claim_due(owner=OWNER, token=token, limit=10)
    assert (alone.pk, alone.claimed_in_batch) == (retry.pk, False)
    [rest] = action_claim_due(owner=OWNER, token=token, limit=10)
    assert rest.pk == new2.pk
