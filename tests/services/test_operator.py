"""The operator verb table and its one bulk rule: eligible actions change, the others are skipped and counted."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestration.exceptions import ControlChangeRejected, NoEligibleActions
from orchestration.models import Action, ActionStatus, AuditEntry, ExecutionLog
from orchestration.services import control
from orchestration.services.enqueue import action_enqueue
from orchestration.services.operator_verb import ACTIONS, BULK_ELIGIBLE, BULK_SINGLE, FLAGS
from orchestration.services.verbs import VERBS, flag_verb, operator_run, verbs_where
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db

#: The verbs on actions that follow the bulk rule (retract takes one action a request: services/test_retract.py).
ACTION_VERBS = [verb.name for verb in verbs_where(target=ACTIONS, bulk=BULK_ELIGIBLE)]
#: verb → (the status an eligible action has, extra service arguments, "did it change?" for that action)
EFFECTS = {
    "retry": (ActionStatus.DLQ, {}, lambda a: (a.status, a.attempts) == (ActionStatus.PENDING, 0)),
    "discard": (ActionStatus.NEEDS_REVIEW, {}, lambda a: a.status == ActionStatus.FAILED),
    "requeue": (ActionStatus.RETRY, {}, lambda a: a.not_before <= timezone.now()),
    "cancel": (ActionStatus.AWAITING_APPROVAL, {}, lambda a: a.status == ActionStatus.CANCELLED),
    "priority": (ActionStatus.READY, {"priority": 9}, lambda a: a.priority == 9),
}


def action_in(status: str) -> Action:
    action = action_enqueue(
        action_type="SLEEP", payload={"seconds": 0}, not_before=timezone.now() + timedelta(hours=1)
    )[0]
    Action.objects.filter(pk=action.pk).update(status=status, attempts=2)
    action.refresh_from_db()
    return action


def snapshot() -> list[tuple]:
    return [
        *Action.objects.order_by("id").values_list("id", "status", "attempts", "priority", "not_before"),
        ExecutionLog.objects.count(),
        AuditEntry.objects.count(),
    ]


def test_verbs__every_verb_on_actions_has_its_effect_pinned_here():
    assert set(EFFECTS) == set(ACTION_VERBS)
    assert [verb.name for verb in verbs_where(target=ACTIONS, bulk=BULK_SINGLE)] == ["retract"]


@pytest.mark.parametrize("name", ACTION_VERBS)
def test_bulk__eligible_chosen_actions_change_the_others_are_skipped_and_counted_for_every_verb(name):
    verb = VERBS[name]
    status, params, changed = EFFECTS[name]
    eligible, finished = action_in(status), action_in(ActionStatus.SUCCESS)
    result = operator_run(
        verb=verb, actor="alice", reason="mixed", action_ids=[finished.pk, 424242, eligible.pk], **params
    )
    eligible.refresh_from_db()
    assert changed(eligible)
    assert Action.objects.get(pk=finished.pk).status == ActionStatus.SUCCESS
    assert result.changed and result.report.changed == [eligible.pk]
    assert result.report.skipped == {finished.pk: "SUCCESS", 424242: ""}
    assert result.message.endswith(
        f"; 2 skipped, not {verb.eligible_text}: #{finished.pk} is SUCCESS, #424242 does not exist."
    )
    assert result.message.startswith("1 action ")
    entry = AuditEntry.objects.get(verb=verb.audit_verb)
    assert (entry.outcome, entry.target) == ("DONE", f"1 action: #{eligible.pk}")
    assert entry.before["skipped"] == {str(finished.pk): "SUCCESS", "424242": "missing"}
    assert list(ExecutionLog.objects.values_list("action_id", flat=True)) == [eligible.pk]


@pytest.mark.parametrize("name", ACTION_VERBS)
def test_bulk__no_chosen_action_is_eligible__every_verb_refuses_and_writes_nothing(name):
    verb = VERBS[name]
    _, params, _ = EFFECTS[name]
    finished = action_in(ActionStatus.SUCCESS)
    before = snapshot()
    with pytest.raises(NoEligibleActions) as refused:
        operator_run(verb=verb, actor="alice", reason="none", action_ids=[finished.pk, 424242], **params)
    assert str(refused.value) == (
        f"Nothing to {verb.label.lower()}: none of the chosen actions is {verb.eligible_text}: "
        f"#{finished.pk} is SUCCESS, #424242 does not exist. Nothing changed."
    )
    assert snapshot() == before


def test_bulk__all_eligible_for_the_verbs_that_may__nothing_there_is_refused():
    assert [verb.name for verb in VERBS.values() if verb.all_scope] == ["retry", "discard"]
    action_in(ActionStatus.SUCCESS)
    with pytest.raises(NoEligibleActions, match="Nothing to retry: no action is DLQ or NEEDS_REVIEW"):
        operator_run(verb=VERBS["retry"], actor="alice", reason="all", action_ids=None)
    with pytest.raises(ControlChangeRejected, match="Name at least one action"):
        operator_run(verb=VERBS["cancel"], actor="alice", reason="all", action_ids=None)


def test_bulk__many_skipped_actions_are_counted_and_the_first_few_named():
    dead = action_in(ActionStatus.DLQ)
    finished = [action_in(ActionStatus.SUCCESS).pk for _ in range(7)]
    result = operator_run(verb=VERBS["retry"], actor="alice", reason="r", action_ids=[dead.pk, *finished])
    assert result.message == (
        "1 action retried; 7 skipped, not DLQ or NEEDS_REVIEW: "
        + ", ".join(f"#{pk} is SUCCESS" for pk in finished[:5])
        + " and 2 more."
    )


def test_verbs__each_control_flag_value_is_set_by_exactly_one_verb_through_the_control_services():
    flag_verbs = verbs_where(target=FLAGS)
    assert sorted(verb.flag for verb in flag_verbs) == [
        ("killed", False),
        ("killed", True),
        ("paused", False),
        ("paused", True),
        ("proof_mode", False),
        ("proof_mode", True),
    ]
    assert all(verb.service.__module__ == control.__name__ for verb in flag_verbs)
    result = operator_run(verb=flag_verb(flag="proof_mode", value=False), actor="alice", reason="go live")
    assert result.changed and not control.control_flags_get().proof_mode
    assert result.message == "done (paused=False, killed=False, mode=REAL)."
    assert AuditEntry.objects.get().verb == "switch to REAL"


def test_docs__the_flow_control_page_lists_every_verb_with_its_permission_and_audit_verb():
    rows = [line for line in (ROOT / "docs" / "flow-control.md").read_text().splitlines() if line.startswith("| ")]
    for verb in VERBS.values():
        codename = verb.permission.split(".", 1)[1]
        assert any(
            row.startswith(f"| {verb.label} ")
            and f"| `{codename}` |" in row
            and row.endswith(f"| `{verb.audit_verb}` |")
            for row in rows
        ), verb.name
