"""Recording outcomes (success, failure, recovery of orphans), fenced on the lease token."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestration.exceptions import LeaseNotHeld
from orchestration.models import Action, ActionStatus, ExecutionLog, Lease
from orchestration.services.claim import action_claim_due
from orchestration.services.results import action_mark_failure, action_mark_success, action_recover_orphans
from tests.factories import OWNER, hold_lease, post_social

pytestmark = pytest.mark.django_db


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
