"""AdapterRunner: adapter calls on a worker thread that the loop stops waiting for at a deadline."""

import threading
import time

from orchestration.daemon.runner import AdapterRunner


def test_adapter_runner__calls_reuse_one_worker_thread_and_return_results_or_errors():
    runner = AdapterRunner()
    far = time.monotonic() + 5
    names = [runner.call(lambda: threading.current_thread().name, deadline=far).result for _ in range(3)]
    job = runner.call(lambda: 1 / 0, deadline=far)
    runner.close()
    assert names == ["aol-adapter"] * 3
    assert isinstance(job.error, ZeroDivisionError)


def test_adapter_runner__overrun__stops_waiting_at_the_deadline_abandoned_thread_counted_until_it_ends():
    runner = AdapterRunner()
    release = threading.Event()
    started = time.monotonic()
    job = runner.call(lambda: release.wait(10) and "late", deadline=time.monotonic() + 0.2)
    assert not job.done.is_set() and time.monotonic() - started < 1.0
    runner.abandon()
    assert runner.abandoned_alive() == 1
    fresh = runner.call(lambda: "next", deadline=time.monotonic() + 5)
    assert fresh.result == "next"  # a new worker, not stuck behind the abandoned one
    release.set()
    job.done.wait(5)
    time.sleep(0.1)
    assert runner.abandoned_alive() == 0
    runner.close()
