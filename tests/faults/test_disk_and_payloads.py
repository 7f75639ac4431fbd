"""Disk and payload faults: an unwritable artifacts directory, poison payloads (real daemon processes)."""

import time

import pytest
from django.core.management import CommandError, call_command

from orchestration.exceptions import InvalidPayload
from orchestration.models import Action, ActionStatus, ExecutionLog
from orchestration.services.queue import action_enqueue, action_payload_from_json
from tests.conftest import wait_until
from tests.factories import read_only_directory
from tests.faults.conftest import artifact_files, assert_nothing_running, success_logs

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def test_artifacts_dir_read_only__transient_failure_with_clear_message__succeeds_once_writable(
    start_daemon, artifacts_dir
):
    """Invariant: with the artifacts directory read-only, a PROOF attempt fails transiently (RETRY, not DLQ)
    with a message naming the directory and what to check; the daemon keeps running; once the directory
    is writable again the action succeeds, with exactly one artifact."""
    artifacts_dir.mkdir(parents=True)
    with read_only_directory(artifacts_dir):
        action = action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key="read-only")[0]
        daemon = start_daemon("--proof", env={"AOL_MAX_ATTEMPTS": "10"})
        wait_until(lambda: Action.objects.get(pk=action.pk).attempts >= 2, message="two failed attempts")
        action.refresh_from_db()
        assert action.status in (ActionStatus.RETRY, ActionStatus.RUNNING)
        failure = ExecutionLog.objects.filter(action_id=action.pk, level="WARNING").first().message
        assert "could not write artifact" in failure and str(artifacts_dir) in failure
        assert "writable" in failure  # says what to check
        assert "retrying in" in failure
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, message="success when writable")
    assert len(success_logs(action)) == 1
    assert len(artifact_files(artifacts_dir, "sleep")) == 1
    assert daemon.proc.poll() is None


def nested(depth: int) -> dict:
    value: dict = {"seconds": 1}
    for _ in range(depth):
        value = {"seconds": 1, "x": value}
    return value


POISON = {
    "deeply nested": (nested(10_000), "nested more than"),
    "huge": ({"seconds": 1, "fail": "x" * 100_000}, "bytes; the limit is"),
    "invalid UTF-8": ({"seconds": 1, "fail": "\udcff"}, "not valid UTF-8"),
    "NUL in a text": ({"seconds": 1, "note": "a\x00b"}, "NUL character"),
    "NUL in a key": ({"seconds": 1, "a\x00": "b"}, "NUL character"),
    "wrong type": ({"seconds": "5"}, "'seconds' must be a number"),
    "not an object": ([1, 2, 3], "must be a JSON object"),
    "not finite": ({"seconds": float("nan")}, "cannot be stored as JSON"),
    "bytes": ({"seconds": b"1"}, "cannot be stored as JSON"),
    "out of range": ({"seconds": 10**9}, "between 0 and"),
}


@pytest.mark.parametrize("payload, message", POISON.values(), ids=POISON.keys())
def test_enqueue__poison_payload__rejected_with_clear_error_and_nothing_written(payload, message):
    """Invariant: a poison payload is rejected at enqueue with a message saying what is wrong; no row written."""
    with pytest.raises(InvalidPayload, match=message):
        action_enqueue(action_type="SLEEP", payload=payload, idempotency_key="poison")
    assert Action.objects.count() == 0
    assert ExecutionLog.objects.count() == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a":' * 10_000 + "1" + "}" * 10_000, "nested more than"),  # under the size limit: parsing must not crash
        ("[" * 100_000 + "]" * 100_000, "larger than"),
        ('{"seconds": "\\ud800"}', "not valid UTF-8"),
    ],
    ids=["deeply nested JSON text", "huge JSON text", "lone surrogate escape"],
)
def test_aol_enqueue__poison_json_text__command_error_and_nothing_written(text, message):
    """Invariant: poison JSON text on the command line ends in a CommandError (not a traceback); no row written."""
    with pytest.raises(CommandError, match="Nothing enqueued"):
        call_command("aol_enqueue", "SLEEP", "--payload", text, "--key", "poison-cli")
    with pytest.raises(InvalidPayload, match=message):
        action_enqueue(action_type="SLEEP", payload=action_payload_from_json(text=text), idempotency_key="p")
    assert Action.objects.count() == 0


def test_daemon__poison_rows_written_around_the_services__fail_permanently_daemon_survives(start_daemon):
    """Invariant: rows that bypassed validation (a shell, an older version) with wrong types, a non-object
    payload, excessive nesting or an unknown type go to DLQ at their first attempt with a clear error;
    the daemon never crashes and the good action queued behind them succeeds."""
    poison = [
        Action.objects.create(idempotency_key="p-type", action_type="SLEEP", payload={"seconds": "x"}),
        Action.objects.create(idempotency_key="p-list", action_type="SLEEP", payload=[1, 2]),
        Action.objects.create(idempotency_key="p-deep", action_type="SLEEP", payload=nested(50)),
        Action.objects.create(idempotency_key="p-unknown", action_type="NOPE", payload={}),
        Action.objects.create(idempotency_key="p-huge", action_type="SLEEP", payload={"seconds": 0, "x": "y" * 10**5}),
    ]
    good = action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key="good")[0]
    daemon = start_daemon("--proof")
    wait_until(lambda: Action.objects.get(pk=good.pk).status == ActionStatus.SUCCESS, message="good action ran")
    time.sleep(0.3)
    expected = ["must be a number", "must be a JSON object", "nested more than", "Unknown action type", "bytes"]
    for action, text in zip(poison, expected, strict=True):
        action.refresh_from_db()
        assert (action.status, action.attempts) == (ActionStatus.DLQ, 1), action.idempotency_key
        assert text in action.last_error, (action.idempotency_key, action.last_error)
    assert daemon.proc.poll() is None
    assert "Traceback" not in daemon.output()
    assert_nothing_running()
