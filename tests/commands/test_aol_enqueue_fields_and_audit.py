"""``aol_enqueue`` goes through the operator enqueue: audited with who and why, every field per line."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from orchestration.management.commands._common import cli_actor
from orchestration.management.commands.aol_enqueue import DEFAULT_REASON
from orchestration.models import Action, AuditEntry, AuditOutcome, ExecutionLog

pytestmark = pytest.mark.django_db

PAYLOAD = {"platform": "twitter", "message": "hello"}


def line(key: str, **extra) -> str:
    return json.dumps({"action_type": "POST_SOCIAL", "payload": PAYLOAD, "idempotency_key": key, **extra})


def run(*args) -> str:
    out = StringIO()
    call_command("aol_enqueue", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_aol_enqueue__is_audited_and_logged_with_the_cli_actor_and_the_reason():
    run("POST_SOCIAL", "--payload", json.dumps(PAYLOAD), "--key", "k1", "--reason", "launch post")
    action = Action.objects.get(idempotency_key="k1")
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.verb, entry.outcome, entry.reason) == (
        cli_actor(),
        "enqueue",
        AuditOutcome.DONE,
        "launch post",
    )
    assert entry.target == f"action #{action.pk} (POST_SOCIAL)"
    assert ExecutionLog.objects.get(action_id=action.pk).actor == cli_actor()


def test_aol_enqueue__actor_can_be_given_and_a_missing_reason_is_recorded_as_such():
    run("POST_SOCIAL", "--payload", json.dumps(PAYLOAD), "--actor", "deploy-bot")
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.reason) == ("deploy-bot", DEFAULT_REASON)


def test_aol_enqueue__an_empty_reason_is_refused_and_nothing_is_written():
    with pytest.raises(CommandError, match="Nothing enqueued: A reason is required"):
        run("POST_SOCIAL", "--payload", json.dumps(PAYLOAD), "--reason", " ")
    assert not Action.objects.exists() and not AuditEntry.objects.exists()


def test_aol_enqueue_from_file__lines_carry_priority_requires_approval_and_not_before(jsonl):
    path = jsonl(line("urgent", priority=40, requires_approval=True, not_before="2030-01-02T03:04:05Z"), line("plain"))
    run("--from-file", path)
    urgent, plain = Action.objects.get(idempotency_key="urgent"), Action.objects.get(idempotency_key="plain")
    assert (urgent.priority, urgent.requires_approval, urgent.not_before.isoformat()) == (
        40,
        True,
        "2030-01-02T03:04:05+00:00",
    )
    assert (plain.priority, plain.requires_approval) == (0, False)


def test_aol_enqueue_from_file__flags_are_the_default_for_lines_that_do_not_say(jsonl):
    path = jsonl(line("default"), line("own", priority=-3, requires_approval=False, not_before="2031-05-06T07:08:09Z"))
    run("--from-file", path, "--priority", "9", "--requires-approval", "--not-before", "2030-01-02T03:04:05")
    default, own = Action.objects.get(idempotency_key="default"), Action.objects.get(idempotency_key="own")
    assert (default.priority, default.requires_approval, default.not_before.isoformat()) == (
        9,
        True,
        "2030-01-02T03:04:05+00:00",
    )
    assert (own.priority, own.requires_approval, own.not_before.isoformat()) == (
        -3,
        False,
        "2031-05-06T07:08:09+00:00",
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (line("b", priority=300), r"Nothing enqueued: Line 2 \(key 'b'\): Priority must be a whole number"),
        (line("b", requires_approval="yes"), r"Nothing enqueued: Line 2 \(key 'b'\): requires_approval must be"),
    ],
)
def test_aol_enqueue_from_file__a_bad_priority_or_approval_names_the_line_and_nothing_is_written(jsonl, bad, message):
    with pytest.raises(CommandError, match=message):
        run("--from-file", jsonl(line("a"), bad))
    assert not Action.objects.exists() and not AuditEntry.objects.exists()


def test_aol_enqueue_from_file__is_audited_once_with_who_why_the_file_and_the_counts(jsonl):
    path = jsonl(line("a"), line("b"))
    run("--from-file", path, "--reason", "spring campaign", "--actor", "ops@laptop")
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.verb, entry.outcome, entry.reason) == (
        "ops@laptop",
        "enqueue",
        AuditOutcome.DONE,
        "spring campaign",
    )
    assert entry.after == {"created": 2, "existing": 0, "conflicts": 0, "source": path}
