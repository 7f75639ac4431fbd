"""action_claim_due and action_release_unstarted: what a claim takes, in what order, fenced on the lease."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestration.exceptions import LeaseNotHeld
from orchestration.models import Action, ActionStatus, ExecutionLog, Lease
from orchestration.services.claim import action_claim_due, action_release_unstarted
from orchestration.services.enqueue import action_enqueue
from tests.factories import OWNER, data_statements, hold_lease, post_social

pytestmark = pytest.mark.django_db

VALID = {"platform": "twitter", "message": "Launch day!"}


def _claim_one(token: int) -> Action:
    (action,) = action_claim_due(owner=OWNER, token=token, limit=1)
    return action


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


def test_action_release_unstarted__returns_claims_without_counting_the_attempt():
    post_social("k")
    token = hold_lease()
    action = _claim_one(token)
    assert action_release_unstarted(actions=[action], token=token) == 1
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)


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
