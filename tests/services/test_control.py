"""Control flags: defaults, changes with actor and reason, the audit row each change writes."""

import pytest

from orchestration.exceptions import ControlChangeRejected
from orchestration.models import ControlFlags, ExecutionLog
from orchestration.services.control import (
    control_flags_get,
    control_kill,
    control_pause,
    control_resume,
    control_revive,
    control_set_proof_mode,
)

pytestmark = pytest.mark.django_db


def test_control_flags_get__fresh_database_starts_in_proof_mode_running():
    ControlFlags.objects.all().delete()
    flags = control_flags_get()
    assert (flags.paused, flags.killed, flags.proof_mode) == (False, False, True)


@pytest.mark.parametrize(
    ("change", "field", "value", "verb"),
    [
        (control_pause, "paused", True, "pause"),
        (control_kill, "killed", True, "kill"),
    ],
)
def test_control_change__sets_the_flag_and_logs_who_what_and_why(change, field, value, verb):
    flags, changed = change(actor="alice", reason="campaign on hold")
    assert changed and getattr(control_flags_get(), field) is value
    log = ExecutionLog.objects.get()
    assert log.action_id is None and log.actor == "alice"
    assert log.message == f"{verb} by alice: {field} False → True; reason: campaign on hold"


def test_control_change__round_trips_and_records_every_step():
    control_pause(actor="alice", reason="a")
    control_resume(actor="bob", reason="b")
    control_kill(actor="carol", reason="c")
    control_revive(actor="dave", reason="d")
    control_set_proof_mode(enabled=False, actor="erin", reason="go live")
    flags = control_flags_get()
    assert (flags.paused, flags.killed, flags.proof_mode, flags.updated_by) == (False, False, False, "erin")
    assert list(ExecutionLog.objects.order_by("id").values_list("actor", flat=True)) == [
        "alice",
        "bob",
        "carol",
        "dave",
        "erin",
    ]


def test_control_change__repeating_a_change_is_logged_as_no_change():
    control_pause(actor="alice", reason="a")
    _, changed = control_pause(actor="alice", reason="again")
    assert not changed
    assert ExecutionLog.objects.order_by("id").last().message.endswith("(no change); reason: again")


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_control_change__missing_or_oversized_reason_is_rejected_and_changes_nothing(reason):
    with pytest.raises(ControlChangeRejected):
        control_pause(actor="alice", reason=reason)
    assert control_flags_get().paused is False
    assert not ExecutionLog.objects.exists()
