"""Operator flow control on actions: priorities, cancel (waiting and running), per-type pause."""

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import ControlChangeRejected, InvalidPriority, NoEligibleActions
from orchestration.models import Action, ActionStatus, ActionTypePause, AuditEntry, ExecutionLog
from orchestration.services.claim import action_claim_due
from orchestration.services.control import control_pause_type, control_resume_type
from orchestration.services.enqueue import action_enqueue
from orchestration.services.operator import action_cancel, action_set_priority
from orchestration.services.results import action_recover_orphans
from tests.conftest import wait_until
from tests.factories import OWNER, hold_lease, post_social

pytestmark = pytest.mark.django_db


def sleep(key: str, seconds: float = 0, **extra) -> Action:
    return action_enqueue(action_type="SLEEP", payload={"seconds": seconds}, idempotency_key=key, **extra)[0]


def state() -> list[tuple]:
    """Everything an operator request could change, to show that a refused one changed nothing."""
    return [
        *Action.objects.order_by("id").values_list("id", "status", "priority", "cancel_requested", "last_error"),
        ExecutionLog.objects.count(),
        AuditEntry.objects.count(),
    ]


# --- Priorities -------------------------------------------------------------------------------------------


def test_claim__higher_priority_first_then_first_in_first_out():
    low = sleep("low", priority=-5)
    first_normal, second_normal = sleep("n1"), sleep("n2")
    urgent = sleep("urgent", priority=50)
    later_urgent = sleep("urgent-2", priority=50)
    order = []
    token = hold_lease()
    while batch := action_claim_due(owner=OWNER, token=token, limit=1, proof=True):
        order.extend(a.pk for a in batch)
    assert order == [urgent.pk, later_urgent.pk, first_normal.pk, second_normal.pk, low.pk]


def test_claim__a_higher_priority_action_not_yet_due_does_not_block_lower_ones():
    action_enqueue(
        action_type="SLEEP", payload={"seconds": 0}, priority=100, not_before=timezone.now() + timedelta(hours=1)
    )
    due = sleep("due", priority=-100)
    assert [a.pk for a in action_claim_due(owner=OWNER, token=hold_lease(), limit=5, proof=True)] == [due.pk]


@pytest.mark.parametrize("priority", [101, -101, "5", 2.5, True, None])
def test_enqueue__priority_out_of_range_or_not_a_whole_number__refused_nothing_written(priority):
    with pytest.raises(InvalidPriority, match="whole number from -100 to 100"):
        action_enqueue(action_type="SLEEP", payload={"seconds": 0}, priority=priority)
    assert not Action.objects.exists()


def test_priority_column__the_database_refuses_out_of_range_values():
    action = sleep("k")
    with pytest.raises(IntegrityError), transaction.atomic():
        Action.objects.filter(pk=action.pk).update(priority=101)
    assert Action.objects.get(pk=action.pk).priority == 0


def test_action_set_priority__changes_waiting_actions_logs_and_audits():
    a, b = sleep("a"), sleep("b", priority=7)
    changed = action_set_priority(action_ids=[a.pk, b.pk], priority=7, actor="alice", reason="launch first").changed
    assert changed == [a.pk]
    assert Action.objects.get(pk=a.pk).priority == 7
    assert "priority by alice: 0 → 7" in ExecutionLog.objects.get(action_id=a.pk).message
    audit = AuditEntry.objects.get(verb="set priority")
    assert (audit.outcome, audit.after) == ("DONE", {"priority": 7})


@pytest.mark.parametrize(
    ("ids", "priority", "error", "message"),
    [
        ("finished", 5, NoEligibleActions, "is SUCCESS"),
        ("missing", 5, NoEligibleActions, "#9999 does not exist"),
        ("waiting", 500, InvalidPriority, "from -100 to 100"),
        ("none", 5, ControlChangeRejected, "at least one action"),
    ],
)
def test_action_set_priority__bad_input__clear_error_nothing_changed(ids, priority, error, message):
    waiting, done = sleep("w"), sleep("d")
    Action.objects.filter(pk=done.pk).update(status=ActionStatus.SUCCESS)
    chosen = {
        "finished": [done.pk],
        "missing": [9999],
        "waiting": [waiting.pk],
        "none": [],
    }[ids]
    before = state()
    with pytest.raises(error, match=message):
        action_set_priority(action_ids=chosen, priority=priority, actor="alice", reason="r")
    assert state() == before


# --- Cancel -----------------------------------------------------------------------------------------------


def test_action_cancel__waiting_actions_become_cancelled_and_stay_in_the_table():
    pending = sleep("p")
    scheduled = action_enqueue(
        action_type="SLEEP", payload={"seconds": 0}, not_before=timezone.now() + timedelta(days=1)
    )[0]
    retrying = sleep("r")
    Action.objects.filter(pk=retrying.pk).update(status=ActionStatus.RETRY, attempts=1)
    report = action_cancel(action_ids=[pending.pk, scheduled.pk, retrying.pk], actor="alice", reason="campaign pulled")
    assert sorted(report.cancelled) == sorted([pending.pk, scheduled.pk, retrying.pk]) and report.stop_requested == []
    assert set(Action.objects.values_list("status", flat=True)) == {ActionStatus.CANCELLED}
    assert Action.objects.count() == 3
    assert "cancelled by alice: campaign pulled" in Action.objects.get(pk=pending.pk).last_error
    audit = AuditEntry.objects.get(verb="cancel")
    assert audit.after == {"cancelled": 3, "stop_requested": 0} and audit.reason == "campaign pulled"
    assert action_claim_due(owner=OWNER, token=hold_lease(), limit=5, proof=True) == []


@pytest.mark.parametrize(
    "status", [ActionStatus.SUCCESS, ActionStatus.FAILED, ActionStatus.CANCELLED, ActionStatus.DLQ]
)
def test_action_cancel__a_finished_or_dead_action__refused_nothing_changed(status):
    _, finished = sleep("w"), sleep("f")
    Action.objects.filter(pk=finished.pk).update(status=status)
    before = state()
    with pytest.raises(NoEligibleActions, match=f"#{finished.pk} is {status}"):
        action_cancel(action_ids=[finished.pk], actor="alice", reason="r")
    assert state() == before


def test_action_cancel__unknown_ids_or_no_reason__refused_nothing_changed():
    waiting = sleep("w")
    before = state()
    with pytest.raises(NoEligibleActions, match="#424242 does not exist"):
        action_cancel(action_ids=[424242], actor="alice", reason="r")
    with pytest.raises(ControlChangeRejected, match="reason is required"):
        action_cancel(action_ids=[waiting.pk], actor="alice", reason="")
    with pytest.raises(ControlChangeRejected, match="whole numbers"):
        action_cancel(action_ids=["x"], actor="alice", reason="r")
    assert state() == before


def test_action_cancel__a_running_action_is_asked_to_stop_not_cancelled_outright():
    action = sleep("s")
    [running] = action_claim_due(owner=OWNER, token=hold_lease(), limit=1, proof=True)
    report = action_cancel(action_ids=[running.pk], actor="alice", reason="stop it")
    assert report.stop_requested == [action.pk] and report.cancelled == []
    action.refresh_from_db()
    assert (action.status, action.cancel_requested) == (ActionStatus.RUNNING, True)
    again = action_cancel(action_ids=[running.pk], actor="alice", reason="stop it")  # already asked
    assert again.stop_requested == [] and AuditEntry.objects.filter(verb="cancel").last().outcome == "NO_CHANGE"


@pytest.mark.django_db(transaction=True)
def test_daemon__a_running_sleep_asked_to_stop_ends_cancelled_at_once():
    action = sleep("long", seconds=60)
    daemon = Daemon(
        DaemonConfig.from_settings(owner="test:1", interval_seconds=0.05, control_poll_seconds=0.05),
        out=lambda line: None,
    )
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.RUNNING, message="running")
        action_cancel(action_ids=[action.pk], actor="alice", reason="wrong drill")
        wait_until(
            lambda: Action.objects.get(pk=action.pk).status == ActionStatus.CANCELLED, timeout=5, message="cancelled"
        )
    finally:
        daemon.request_stop("test over")
        thread.join(10)
    action.refresh_from_db()
    assert action.attempts == 1 and "cancelled on request" in action.last_error
    assert ExecutionLog.objects.filter(
        action_id=action.pk, message__startswith="cancelled as an operator asked"
    ).exists()


def test_recover_orphans__a_running_action_asked_to_stop_whose_daemon_died_is_cancelled_not_retried():
    action = sleep("s")
    old = hold_lease(owner="dead:1", ttl_seconds=0.001)
    action_claim_due(owner="dead:1", token=old, limit=1, proof=True)
    action_cancel(action_ids=[action.pk], actor="alice", reason="stop")
    new = hold_lease(owner="next:2")
    report = action_recover_orphans(token=new, actor="next:2")
    assert report.cancelled == [action.pk] and report.retried == []
    assert Action.objects.get(pk=action.pk).status == ActionStatus.CANCELLED


def test_claim__an_action_cancelled_while_its_attempt_was_being_recorded_is_not_run_again():
    action = sleep("s")
    Action.objects.filter(pk=action.pk).update(status=ActionStatus.RETRY, cancel_requested=True, attempts=1)
    assert action_claim_due(owner=OWNER, token=hold_lease(), limit=1, proof=True) == []
    assert Action.objects.get(pk=action.pk).status == ActionStatus.CANCELLED


# --- Pause per action type ---------------------------------------------------------------------------------


def test_pause_type__claims_skip_it_others_go_on_resume_brings_it_back():
    post = post_social("p")
    drill = sleep("s")
    pause, changed = control_pause_type(action_type="POST_SOCIAL", actor="alice", reason="brand review")
    assert changed and (pause.paused_by, pause.reason) == ("alice", "brand review")
    token = hold_lease()
    assert [a.pk for a in action_claim_due(owner=OWNER, token=token, limit=5, proof=True)] == [drill.pk]
    _, changed = control_resume_type(action_type="POST_SOCIAL", actor="bob", reason="reviewed")
    assert changed and not ActionTypePause.objects.exists()
    assert [a.pk for a in action_claim_due(owner=OWNER, token=token, limit=5, proof=True)] == [post.pk]
    audits = list(AuditEntry.objects.order_by("id").values_list("actor", "verb", "outcome", "target"))
    assert audits == [
        ("alice", "pause type", "DONE", "action type POST_SOCIAL"),
        ("bob", "resume type", "DONE", "action type POST_SOCIAL"),
    ]


def test_pause_type__twice_keeps_who_paused_it_first():
    control_pause_type(action_type="SLEEP", actor="alice", reason="first")
    pause, changed = control_pause_type(action_type="SLEEP", actor="bob", reason="second")
    assert not changed and (pause.paused_by, pause.reason) == ("alice", "first")
    assert AuditEntry.objects.order_by("id").last().outcome == "NO_CHANGE"


def test_pause_type__unknown_type_or_no_reason__refused_nothing_written():
    before = state()
    with pytest.raises(ControlChangeRejected, match="Unknown action type 'NOPE'"):
        control_pause_type(action_type="NOPE", actor="alice", reason="r")
    with pytest.raises(ControlChangeRejected, match="reason is required"):
        control_pause_type(action_type="SLEEP", actor="alice", reason=" ")
    with pytest.raises(ControlChangeRejected, match="neither paused nor a known action type"):
        control_resume_type(action_type="NOPE", actor="alice", reason="r")
    assert state() == before and not ActionTypePause.objects.exists()
