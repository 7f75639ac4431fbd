"""Concurrent enqueues with one idempotency key, from threads and from processes at the same instant."""

import json
import re
import threading
import time

import pytest
from django.db import connection

from orchestration.exceptions import IdempotencyConflict
from orchestration.models import Action
from orchestration.services.enqueue import action_enqueue
from tests.faults.conftest import wait_for_exit

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

SAME, OTHER = {"seconds": 1}, {"seconds": 2}


def test_enqueue__20_concurrent_same_key_threads_and_processes__one_row_others_get_it_or_the_conflict(
    start_daemons_together,
):
    """Invariant: 10 threads and 10 processes enqueueing one key at the same instant (a third of them with a
    different payload) leave exactly one row; exactly one caller created it; every caller with the
    winner's payload got that same action back, every other caller got the conflict error."""
    key = "race-key"
    payload_of = {i: OTHER if i % 3 == 0 else SAME for i in range(20)}
    at = time.time() + 3.0
    processes = {
        i: start_daemons_together(
            1, "SLEEP", "--payload", json.dumps(payload_of[i]), "--key", key, at=at, command="aol_enqueue"
        )[0]
        for i in range(10, 20)
    }
    results: dict[int, tuple] = {}

    def enqueue(i: int) -> None:
        try:
            time.sleep(max(0.0, at - time.time()))
            action, created = action_enqueue(action_type="SLEEP", payload=payload_of[i], idempotency_key=key)
            results[i] = ("ok", action.pk, created)
        except IdempotencyConflict as exc:
            results[i] = ("conflict", str(exc))
        except Exception as exc:  # anything else is a failure of the property
            results[i] = ("error", repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for i, process in processes.items():
        code, _ = wait_for_exit(process, timeout=60)
        out = process.output()
        if match := re.search(r"Action #(\d+) .*(enqueued\.|already exists)", out):
            results[i] = ("ok", int(match.group(1)), match.group(2) == "enqueued.")
        elif "is already used by action" in out:
            results[i] = ("conflict", out)
        else:
            results[i] = ("error", f"exit {code}: {out}")

    [row] = Action.objects.filter(idempotency_key=key)
    assert len(results) == 20
    assert [r for r in results.values() if r[0] == "error"] == []
    created = [i for i, r in results.items() if r[0] == "ok" and r[2]]
    assert len(created) == 1, results
    for i, result in results.items():
        if payload_of[i] == row.payload:
            assert result[:2] == ("ok", row.pk), (i, result)
        else:
            assert result[0] == "conflict" and f"action #{row.pk}" in result[1], (i, result)
