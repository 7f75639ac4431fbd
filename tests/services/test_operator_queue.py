"""Operator services on the queue: retry/discard DLQ, requeue now, enqueue by an operator, queue depth."""

import pytest
from django.utils import timezone

from orchestration.dbclock import db_now
from orchestration.exceptions import ControlChangeRejected, IdempotencyConflict, NoEligibleActions
from orchestration.models import Action, ActionStatus, AuditEntry, ExecutionLog, TickLedger
from orchestration.services.claim import action_queue_depth
from orchestration.services.control import control_pause
from orchestration.services.enqueue import action_enqueue, action_enqueue_by_operator
from orchestration.services.lease import lease_acquire_or_renew
from orchestration.services.ledger import tick_record
from orchestration.services.operator import action_discard, action_requeue_now, action_retry
from tests.console_fixtures import dead_action

pytestmark = pytest.mark.django_db

PAYLOAD = {"platform": "twitter", "message": "hello"}


def test_action_retry__selected_back_to_pending_attempts_reset_and_logged():
    first, second, other = dead_action(1), dead_action(2), dead_action(3)
    changed = action_retry(action_ids=[first.pk, second.pk], actor="alice", reason="fixed the token").changed
    assert changed == [first.pk, second.pk]
    for action in (first, second):
        action.refresh_from_db()
        assert (action.status, action.attempts, action.last_error) == (ActionStatus.PENDING, 0, "")
        assert action.not_before <= timezone.now()
        log = ExecutionLog.objects.get(action_id=action.pk)
        assert log.actor == "alice"
        assert "retry DLQ by alice: DLQ → PENDING, attempts 2 → 0; reason: fixed the token" == log.message
    other.refresh_from_db()
    assert other.status == ActionStatus.DLQ
    entry = AuditEntry.objects.get(verb="retry DLQ")
    assert (entry.actor, entry.outcome, entry.reason) == ("alice", "DONE", "fixed the token")
    assert entry.before == {"ids": [first.pk, second.pk], "statuses": {"DLQ": 2}}
    assert entry.after == {"status": "PENDING", "attempts": 0}
    assert entry.target == f"2 actions: #{first.pk}, #{second.pk}"


def test_action_retry__none_of_the_chosen_actions_is_dlq_or_needs_review__refused_nothing_written():
    waiting, _ = action_enqueue(action_type="POST_SOCIAL", payload=PAYLOAD)
    done = dead_action()
    Action.objects.filter(pk=done.pk).update(status=ActionStatus.SUCCESS)
    with pytest.raises(NoEligibleActions, match=f"#{waiting.pk} is PENDING, #{done.pk} is SUCCESS"):
        action_retry(action_ids=[waiting.pk, done.pk], actor="alice", reason="r")
    assert set(Action.objects.values_list("status", flat=True)) == {ActionStatus.PENDING, ActionStatus.SUCCESS}
    assert not AuditEntry.objects.exists()
    assert not ExecutionLog.objects.exists()


def test_action_retry__all_is_capped_at_the_limit_oldest_first():
    dead = [dead_action(n) for n in range(5)]
    changed = action_retry(action_ids=None, actor="alice", reason="r", limit=3).changed
    assert changed == [a.pk for a in dead[:3]]
    assert Action.objects.filter(status=ActionStatus.DLQ).count() == 2


def test_action_retry__too_many_ids_is_refused_and_changes_nothing():
    dead = [dead_action(n) for n in range(3)]
    with pytest.raises(ControlChangeRejected, match="at most 2"):
        action_retry(action_ids=[a.pk for a in dead], actor="alice", reason="r", limit=2)
    assert Action.objects.filter(status=ActionStatus.DLQ).count() == 3
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_action_retry__bad_reason_is_refused_and_changes_nothing(reason):
    action = dead_action()
    with pytest.raises(ControlChangeRejected):
        action_retry(action_ids=[action.pk], actor="alice", reason=reason)
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ
    assert not AuditEntry.objects.exists() and not ExecutionLog.objects.exists()


def test_action_discard__marks_failed_and_keeps_the_row():
    action = dead_action()
    assert action_discard(action_ids=[action.pk], actor="bob", reason="obsolete campaign").changed == [action.pk]
    action.refresh_from_db()
    assert action.status == ActionStatus.FAILED
    assert action.last_error == "PermanentAdapterError: nope"  # the reason it died stays visible
    assert ExecutionLog.objects.get(action_id=action.pk).message.startswith("discard DLQ by bob: DLQ → FAILED")
    assert AuditEntry.objects.get(verb="discard DLQ").after == {"status": "FAILED"}


def test_action_requeue_now__makes_waiting_actions_due_and_leaves_others():
    later = timezone.now() + timezone.timedelta(hours=2)
    waiting, _ = action_enqueue(action_type="POST_SOCIAL", payload=PAYLOAD, not_before=later)
    dead = dead_action()
    report = action_requeue_now(action_ids=[waiting.pk, dead.pk], actor="carol", reason="launch moved up")
    assert report.changed == [waiting.pk]
    assert Action.objects.due().filter(pk=waiting.pk).exists()
    dead.refresh_from_db()
    assert dead.status == ActionStatus.DLQ


def test_action_enqueue_by_operator__writes_action_log_and_audit():
    action, created = action_enqueue_by_operator(
        action_type="POST_SOCIAL", payload=PAYLOAD, idempotency_key="k-1", actor="dave", reason="smoke test"
    )
    assert created and action.status == ActionStatus.PENDING
    assert ExecutionLog.objects.get(action_id=action.pk).message == "enqueued by dave; reason: smoke test"
    entry = AuditEntry.objects.get(verb="enqueue")
    assert (entry.actor, entry.outcome, entry.target) == ("dave", "DONE", f"action #{action.pk} (POST_SOCIAL)")


def test_action_enqueue_by_operator__conflicting_key_writes_nothing():
    action_enqueue(action_type="POST_SOCIAL", payload=PAYLOAD, idempotency_key="k-1")
    with pytest.raises(IdempotencyConflict):
        action_enqueue_by_operator(
            action_type="POST_SOCIAL",
            payload={"platform": "twitter", "message": "other"},
            idempotency_key="k-1",
            actor="dave",
            reason="r",
        )
    assert Action.objects.count() == 1
    assert not AuditEntry.objects.exists() and not ExecutionLog.objects.exists()


def test_control_pause__writes_an_audit_row_with_before_and_after():
    control_pause(actor="erin", reason="investigating")
    control_pause(actor="erin", reason="again")
    first, second = AuditEntry.objects.order_by("id")
    assert (first.verb, first.outcome, first.before, first.after) == (
        "pause",
        "DONE",
        {"paused": False},
        {"paused": True},
    )
    assert second.outcome == "NO_CHANGE"


def test_action_queue_depth__counts_open_statuses_only():
    action_enqueue(action_type="POST_SOCIAL", payload=PAYLOAD)
    dead_action()
    finished = dead_action(2)
    Action.objects.filter(pk=finished.pk).update(status=ActionStatus.SUCCESS)
    assert action_queue_depth() == {
        "PENDING": 1,
        "READY": 0,
        "RETRY": 0,
        "RUNNING": 0,
        "DLQ": 1,
        "NEEDS_REVIEW": 0,
        "AWAITING_APPROVAL": 0,
    }


def test_tick_record__stores_the_queue_depth():
    lease = lease_acquire_or_renew(owner="test:1", ttl_seconds=30)
    depth = {"PENDING": 3, "READY": 0, "RETRY": 1, "RUNNING": 0, "DLQ": 2}
    assert tick_record(
        duration_seconds=0,
        status="SUCCESS",
        attempted=0,
        succeeded=0,
        owner="test:1",
        token=lease.token,
        queue_depth=depth,
    )
    assert TickLedger.objects.get().queue_depth == depth


def test_tick_record__the_tick_ends_now_by_the_database_clock_and_lasts_its_measured_duration():
    lease = lease_acquire_or_renew(owner="test:1", ttl_seconds=30)
    before = db_now()
    assert tick_record(
        duration_seconds=1.25, status="SUCCESS", attempted=0, succeeded=0, owner="test:1", token=lease.token
    )
    after = db_now()
    tick = TickLedger.objects.get()
    assert before <= tick.finished_at <= after
    assert tick.duration_seconds == pytest.approx(1.25, abs=0.002)  # SQLite's clock counts milliseconds


@pytest.mark.parametrize(("operation", "after"), [(action_retry, "PENDING"), (action_discard, "FAILED")])
def test_action_attention__needs_review_actions_are_retried_or_discarded_like_the_dlq(operation, after):
    parked = dead_action(1)
    Action.objects.filter(pk=parked.pk).update(status=ActionStatus.NEEDS_REVIEW)
    assert operation(action_ids=[parked.pk], actor="alice", reason="checked the mailbox").changed == [parked.pk]
    parked.refresh_from_db()
    assert parked.status == after
