"""The SLEEP drill action: validation, exactly-once PROOF artifact, cooperative stop and deadline."""

import threading
import time

import pytest

from orchestration.adapters import action_types, adapter_get
from orchestration.adapters.base import Attempt
from orchestration.adapters.sleep import MAX_SLEEP_SECONDS
from orchestration.exceptions import (
    AttemptDeadlineExceeded,
    AttemptInterrupted,
    InvalidPayload,
    PermanentAdapterError,
    TransientAdapterError,
)
from orchestration.models import Action
from orchestration.services.enqueue import action_enqueue

pytestmark = pytest.mark.django_db


def sleep_action(payload: dict, key: str = "drill") -> Action:
    return action_enqueue(action_type="SLEEP", payload=payload, idempotency_key=key)[0]


def test_registry__lists_sleep():
    assert "SLEEP" in action_types()
    assert adapter_get("SLEEP").supports_real


@pytest.mark.parametrize(
    "payload, message",
    [
        ({}, "'seconds' is required"),
        ({"seconds": "2"}, "'seconds' must be a number, not str"),
        ({"seconds": True}, "'seconds' must be a number, not bool"),
        ({"seconds": -1}, "between 0 and"),
        ({"seconds": MAX_SLEEP_SECONDS + 1}, "between 0 and"),
        ({"seconds": 1, "fail": "sometimes"}, "'fail' must be one of 'transient', 'permanent'"),
        ({"seconds": 1, "crash": True}, "unknown field(s) 'crash'"),
    ],
)
def test_sleep_validate__bad_payload__rejected_at_enqueue_nothing_written(payload, message):
    with pytest.raises(InvalidPayload, match=message.replace("(", r"\(").replace(")", r"\)")):
        sleep_action(payload)
    assert Action.objects.count() == 0


def test_sleep_execute_proof__run_twice__one_artifact_verified_not_rewritten(artifacts_dir):
    """A PROOF re-run (after a crash) finds the artifact of its key, checks its SHA-256, leaves the file alone."""
    action = sleep_action({"seconds": 0})
    adapter = adapter_get("SLEEP")
    first = adapter.execute(action, proof=True)
    path = artifacts_dir / first.artifact_ref
    before = path.stat()
    second = adapter.execute(action, proof=True)
    assert (second.artifact_ref, second.artifact_sha256) == (first.artifact_ref, first.artifact_sha256)
    assert "verified, not rewritten" in second.message and "verified" not in first.message
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in (artifacts_dir / "sleep").iterdir()] == [path.name]
    assert action.idempotency_key in path.read_text()


def test_sleep_execute_real__acts_on_nothing_and_writes_no_artifact(artifacts_dir):
    result = adapter_get("SLEEP").execute(sleep_action({"seconds": 0}), proof=False)
    assert result.artifact_ref == "" and not artifacts_dir.exists()


@pytest.mark.parametrize("fail, error", [("transient", TransientAdapterError), ("permanent", PermanentAdapterError)])
def test_sleep_execute__fail_on_purpose__raises_that_kind_and_writes_nothing(artifacts_dir, fail, error):
    with pytest.raises(error, match=f"{fail} failure"):
        adapter_get("SLEEP").execute(sleep_action({"seconds": 0, "fail": fail}), proof=True)
    assert not artifacts_dir.exists()


def test_sleep_execute__stop_requested_from_another_thread__interrupted_at_once(artifacts_dir):
    action = sleep_action({"seconds": 30})
    attempt = Attempt(idempotency_key=action.idempotency_key, proof=True)
    threading.Timer(0.1, attempt.request_stop, args=("kill flag set",)).start()
    started = time.monotonic()
    with pytest.raises(AttemptInterrupted, match="kill flag set"):
        adapter_get("SLEEP").execute(action, attempt=attempt)
    assert time.monotonic() - started < 1.0
    assert not artifacts_dir.exists()


def test_sleep_execute__deadline_before_the_end__deadline_exceeded_at_the_deadline():
    action = sleep_action({"seconds": 30})
    attempt = Attempt(idempotency_key=action.idempotency_key, proof=True, deadline=time.monotonic() + 0.2)
    started = time.monotonic()
    with pytest.raises(AttemptDeadlineExceeded):
        adapter_get("SLEEP").execute(action, attempt=attempt)
    assert 0.15 < time.monotonic() - started < 1.0
