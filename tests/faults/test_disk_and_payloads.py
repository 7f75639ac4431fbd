"""Disk and payload faults: an unwritable artifacts directory, poison payloads (real daemon processes)."""

import subprocess
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from orchestration.exceptions import InvalidPayload
from orchestration.metrics import metrics_render
from orchestration.models import Action, ActionStatus, ExecutionLog, TickLedger, TickStatus
from orchestration.services.enqueue import action_enqueue, action_payload_from_json
from orchestration.services.status import status_snapshot
from tests.conftest import wait_until
from tests.faults.conftest import artifact_files, assert_nothing_running, success_logs
from tests.filesystems import mounted_tmpfs

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


#: The queued actions of the read-only test: with the old per-action retries they all reached the DLQ.
READ_ONLY_ACTIONS = 20
#: The read-only test's tmpfs, and a minimum free space it meets once writable (the default, 100 MiB, it never would).
READ_ONLY_TMPFS_SIZE = "1m"
READ_ONLY_MIN_FREE_BYTES = str(256 * 1024)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def test_artifacts_dir_read_only__claiming_paused_no_attempt_counted__all_succeed_once_writable(
    start_daemon, artifacts_dir, settings
):
    """Invariant: on a read-only artifacts mount (a failure of the environment, not of the actions) the daemon
    pauses claiming with a growing backoff, counts no attempt and sends nothing to the DLQ, however long it
    lasts; the reason shows in the status snapshot, aol_status and /metrics; once the mount is writable again
    every queued action succeeds by itself, exactly once, and the daemon never stopped."""
    settings.AOL_ARTIFACTS_MIN_FREE_BYTES = int(READ_ONLY_MIN_FREE_BYTES)
    with mounted_tmpfs(artifacts_dir, size=READ_ONLY_TMPFS_SIZE):
        remount(artifacts_dir, "ro")
        actions = [
            action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key=f"read-only-{i}")[0]
            for i in range(READ_ONLY_ACTIONS)
        ]
        ids = [action.pk for action in actions]
        # The fast test settings retry after 0.2 s, 3 attempts: the retry window is over in about a second.
        daemon = start_daemon("--proof", env={"AOL_ARTIFACTS_MIN_FREE_BYTES": READ_ONLY_MIN_FREE_BYTES})
        wait_until(
            lambda: TickLedger.objects.filter(status=TickStatus.BLOCKED).count() >= 3,
            timeout=30,
            message="three blocked ticks (about 3 s of backoff)",
        )
        states = set(Action.objects.filter(pk__in=ids).values_list("status", "attempts"))
        assert states == {(ActionStatus.PENDING, 0)}, states
        returned = ExecutionLog.objects.filter(action_id__in=ids).values_list("message", flat=True)
        assert len(returned) == 1  # one attempt found the store out; no other action was started
        assert "could not write artifact" in returned[0] and str(artifacts_dir) in returned[0]
        assert "Read-only file system" in returned[0] and "attempt not counted" in returned[0]

        environment = status_snapshot()["environment"]
        assert environment["blocked"] and environment["reason"] == "artifact_store", environment
        assert "Read-only file system" in environment["detail"] and environment["since"]
        out = StringIO()
        call_command("aol_status", stdout=out)
        assert "Blocked:   claiming paused since" in out.getvalue() and "Read-only file system" in out.getvalue()
        metrics = metrics_render()[0].decode()
        assert 'aol_environment_blocked{reason="artifact_store"} 1.0' in metrics

        remount(artifacts_dir, "rw")
        wait_until(
            lambda: Action.objects.filter(pk__in=ids, status=ActionStatus.SUCCESS).count() == READ_ONLY_ACTIONS,
            timeout=60,
            message="every action succeeds once the mount is writable",
        )
        assert set(Action.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}
        assert [len(success_logs(action)) for action in actions] == [1] * READ_ONLY_ACTIONS
        assert len(artifact_files(artifacts_dir, "sleep")) == READ_ONLY_ACTIONS
        assert not Action.objects.filter(status=ActionStatus.DLQ).exists()
        assert not status_snapshot()["environment"]["blocked"]
        assert "Artifact store available again" in daemon.output()
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
