"""AdapterRunner: adapter calls on a worker thread that the loop stops waiting for at a deadline.

``RunnerPool`` holds one runner per attempt that may be in flight at once (AOL_REAL_CONCURRENCY):
the sequential loop uses the first, the concurrent scheduler (scheduler.py) all of them.
"""

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections


class _Done:
    """Set once by the worker, waited for by the loop: one bare lock, held until the job is done.

    ``threading.Event`` would do, but it builds a Condition and a waiter lock per job; this runs
    once per action.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        self._set = True
        self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        if self._lock.acquire(timeout=timeout):
            self._lock.release()  # anyone else waiting goes on too
        return self._set


class _Job:
    __slots__ = ("fn", "done", "result", "error", "on_done")

    def __init__(self, fn: Callable[[], Any], on_done: Callable[[], None] | None = None):
        self.fn = fn
        self.done = _Done()
        self.result: Any = None
        self.error: BaseException | None = None
        self.on_done = on_done  # called on the worker thread once the job is done (wakes a scheduler)


def _worker(jobs: "queue.SimpleQueue[_Job | None]") -> None:
    try:
        while (job := jobs.get()) is not None:
            try:
                job.result = job.fn()
            except BaseException as exc:  # handed to the loop, which decides what it means
                job.error = exc
            finally:
                job.done.set()
                if job.on_done is not None:
                    job.on_done()
    finally:
        connections.close_all()  # this thread's connections, if an adapter used the database


class AdapterRunner:
    """Runs adapter calls on one long-lived worker thread, so the loop can stop waiting at a deadline.

    A call costs a queue hand-over, not a new thread. A call that overruns is abandoned: Python
    cannot kill a thread, so it runs on, but its result is never read; the next call starts a
    fresh worker. ``abandoned_alive()`` counts abandoned threads that are still running.
    """

    def __init__(self, name: str = "aol-adapter") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] | None = None
        self._thread: threading.Thread | None = None
        self._abandoned: list[threading.Thread] = []

    def call(self, fn: Callable[[], Any], *, deadline: float) -> _Job:
        """Run ``fn`` and wait until it is done or ``deadline`` (monotonic) passes; check ``job.done``."""
        job = self.submit(fn)
        # Event.wait is woken by nothing but the job; signal handlers still run meanwhile.
        job.done.wait(max(0.0, deadline - time.monotonic()))
        return job

    def submit(self, fn: Callable[[], Any], *, on_done: Callable[[], None] | None = None) -> _Job:
        """Start ``fn`` on the worker thread and return at once; ``on_done`` is called when it ends."""
        if self._thread is None or self._jobs is None:
            self._jobs = queue.SimpleQueue()
            self._thread = threading.Thread(target=_worker, args=(self._jobs,), name=self._name, daemon=True)
            self._thread.start()
        job = _Job(fn, on_done)
        self._jobs.put(job)
        return job

    def abandon(self) -> None:
        """Give up on the running call; its thread exits when (if ever) the call returns."""
        if self._thread is not None and self._jobs is not None:
            self._jobs.put(None)
            self._abandoned.append(self._thread)
            self._thread = self._jobs = None

    def abandoned_alive(self) -> int:
        self._abandoned = [thread for thread in self._abandoned if thread.is_alive()]
        return len(self._abandoned)

    def close(self) -> None:
        if self._jobs is not None:
            self._jobs.put(None)
        self._thread = self._jobs = None


class RunnerPool:
    """``size`` runners, one per attempt that may be in flight at once; abandoned threads are counted over all."""

    def __init__(self, size: int = 1) -> None:
        self.runners = [AdapterRunner(name="aol-adapter" if i == 0 else f"aol-adapter-{i + 1}") for i in range(size)]

    @property
    def first(self) -> AdapterRunner:
        return self.runners[0]

    def abandoned_alive(self) -> int:
        return sum(runner.abandoned_alive() for runner in self.runners)

    def close(self) -> None:
        for runner in self.runners:
            runner.close()
