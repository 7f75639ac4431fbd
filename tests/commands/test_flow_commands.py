"""aol_cancel, aol_enqueue --priority/--requires-approval, aol_control pause --type, aol_status."""

import pytest
from django.core.management import CommandError, call_command

from orchestration.models import Action, ActionStatus, ActionTypePause, AuditEntry
from orchestration.services.enqueue import action_enqueue

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_aol_cancel__cancels_and_says_how_many(capsys):
    a = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    out = run("aol_cancel", str(a.pk), "--reason", "not needed", "--actor", "alice")
    assert "1 action cancelled." in out and f"Cancelled: #{a.pk}." in out
    assert Action.objects.get(pk=a.pk).status == ActionStatus.CANCELLED
    assert AuditEntry.objects.get(verb="cancel").actor == "alice"


def test_aol_cancel__a_finished_action__error_nothing_changed():
    a = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    Action.objects.filter(pk=a.pk).update(status=ActionStatus.SUCCESS)
    with pytest.raises(CommandError, match=f"#{a.pk} is SUCCESS") as caught:
        run("aol_cancel", str(a.pk), "--reason", "x")
    assert caught.value.returncode == 1
    assert Action.objects.get(pk=a.pk).status == ActionStatus.SUCCESS and not AuditEntry.objects.exists()


def test_aol_cancel__a_non_numeric_id_is_a_usage_error():
    with pytest.raises(CommandError, match="not a whole number"):
        run("aol_cancel", "abc", "--reason", "x")


def test_aol_enqueue__priority_and_approval():
    out = run("aol_enqueue", "SLEEP", "--payload", '{"seconds": 1}', "--priority", "-7", "--requires-approval")
    action = Action.objects.get()
    assert (action.priority, action.requires_approval) == (-7, True)
    assert "priority -7, requires approval" in out


def test_aol_enqueue__priority_out_of_range_is_refused_nothing_written():
    with pytest.raises(CommandError, match="must be from -100 to 100"):
        run("aol_enqueue", "SLEEP", "--payload", '{"seconds": 1}', "--priority", "200")
    assert not Action.objects.exists()


def test_aol_control__pause_and_resume_one_type():
    assert "pause POST_SOCIAL: done" in run("aol_control", "pause", "--type", "POST_SOCIAL", "--reason", "review")
    assert ActionTypePause.objects.get().action_type == "POST_SOCIAL"
    status = run("aol_status")
    assert "Paused:    POST_SOCIAL by cli:" in status and "review" in status
    assert "resume POST_SOCIAL: done" in run("aol_control", "resume", "--type", "POST_SOCIAL", "--reason", "ok")
    assert not ActionTypePause.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pause", "--type", "NOPE"), "Unknown action type 'NOPE'"),
        (("kill", "--type", "SLEEP"), "--type goes with 'pause' or 'resume' only"),
    ],
)
def test_aol_control__bad_type_pause__error_nothing_changed(args, message):
    with pytest.raises(CommandError, match=message):
        run("aol_control", *args, "--reason", "x")
    assert not ActionTypePause.objects.exists() and not AuditEntry.objects.exists()
