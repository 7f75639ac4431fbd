"""The concurrent scheduler: up to AOL_REAL_CONCURRENCY REAL attempts in flight in one tick.

REAL attempts mostly wait on a remote side (an HTTP answer), so the lease holder may run several
at once. One rule more than the sequential loop: two actions with the same exclusive key (one
account's: ``ActionAdapter.exclusive_key``) are never in flight together; the claim passes over
an action whose account is busy (``action_claim_due(exclusive=…)``) and a later claim takes it.

Everything else is the sequential loop's, unchanged, because only the threads that run adapters
are added: the loop's thread alone claims, records and reads the control flags, through the same
``Dispatcher`` (begin → the adapter on a worker of ``RunnerPool`` → finish). So every result is
fenced by the lease token, each attempt has its own deadline (the tick's budget or the type's
timeout, whichever comes first; an overrun is abandoned and recorded as an unknown outcome), the
per-tick cap counts claimed actions, and claims are single actions started at once (never a batch).
A success is recorded in the transaction of the claim that follows it (one commit less per action,
as batch members' successes are); when no claim follows (a pause, the cap, the end) at once.

Stops: a pause, kill, stop request, lost lease or spent budget ends the claiming at once; the
attempts in flight are asked to stop (the watchdog does it for kill, stop and lost lease, through
``DaemonState.attempts``) and the loop waits for them, each until its deadline, and records what
they did, as the sequential loop does with its one attempt. If recording fails (LeaseNotHeld, a
database error) the attempts still in flight are asked to stop and abandoned: nothing of theirs is
recorded, and the next holder's recovery decides about them.
"""

import time
from collections.abc import Callable

from orchestration.daemon.config import DaemonConfig
from orchestration.daemon.dispatch import SUCCEEDED, UNCOUNTED_OUTCOMES, BatchRecorder, Dispatcher, Started
from orchestration.daemon.runner import AdapterRunner, RunnerPool
from orchestration.daemon.state import DaemonState
from orchestration.services.account_limits import action_exclusive_key


class ConcurrentScheduler:
    """Runs one tick's REAL work with up to ``len(runners.runners)`` attempts in flight."""

    def __init__(
        self,
        *,
        config: DaemonConfig,
        state: DaemonState,
        recorder: BatchRecorder,
        dispatcher: Dispatcher,
        runners: RunnerPool,
    ):
        self.config = config
        self.state = state
        self.recorder = recorder
        self.dispatcher = dispatcher
        self.runners = runners
        self._in_flight: dict[AdapterRunner, tuple[Started, str | None]] = {}  # runner → attempt, exclusive key

    def work(self, *, proof: bool, deadline: float, interruption: Callable[[float], str]) -> tuple[int, int, str]:
        """Claim, start and record until nothing is due, the cap is reached or ``interruption`` says stop.

        Returns (attempted, succeeded, why no further action started or '').
        """
        state = self.state
        budget = self.config.max_actions_per_tick
        attempted = succeeded = 0
        reason = ""
        try:
            while True:
                reason = reason or interruption(deadline)
                free = [runner for runner in self.runners.runners if runner not in self._in_flight]
                if not reason and free and budget > 0:
                    claimed = self.recorder.claim_due(limit=min(len(free), budget), proof=proof, exclusive=self._busy())
                    budget -= len(claimed)
                    for action in claimed:
                        started = self.dispatcher.begin(action, proof=proof, deadline=deadline)
                        if isinstance(started, str):  # not started (cancelled while claimed)
                            continue
                        runner = free.pop(0)
                        started.runner = runner
                        key = action_exclusive_key(action_type=action.action_type, payload=action.payload)
                        self._in_flight[runner] = (started, None if started.attempt.proof else key)
                        started.job = runner.submit(started.call, on_done=state.wake.set)
                    if not claimed and not self._in_flight:
                        break  # nothing due, nothing running: the tick's work is done
                else:
                    self.recorder.flush()  # no claim follows to record the successes that wait
                    if not self._in_flight:
                        break
                for started in self._wait():
                    outcome = self.dispatcher.finish(started, success_waits=True)
                    state.progress = time.monotonic()
                    if outcome not in UNCOUNTED_OUTCOMES:
                        attempted += 1
                    if outcome == SUCCEEDED:
                        succeeded += 1
            self.recorder.flush()
        except BaseException:
            self._abandon_all("the daemon stopped recording")
            raise
        finally:
            state.wake.clear()  # what woke the scheduler is no reason to cut the next sleep short
        return attempted, succeeded, reason

    def _busy(self) -> frozenset[str]:
        """The exclusive keys in flight (one account's actions wait while one of them runs)."""
        return frozenset(key for _, key in self._in_flight.values() if key is not None)

    def _wait(self) -> list[Started]:
        """Wait until an attempt ends or overruns, or a flag poll passes; the attempts the loop stops waiting for.

        The workers and the watchdog (kill, stop, lost lease) set ``state.wake``; the poll bounds how long
        a pause (which wakes nobody) or a newly due action waits for the scheduler to look.
        """
        state = self.state
        state.wake.clear()
        if not self._ended():
            soonest = min(started.deadline for started, _ in self._in_flight.values())
            timeout = min(soonest - time.monotonic(), self.config.control_poll_seconds)
            if timeout > 0:
                state.wake.wait(timeout)
        ended = self._ended()
        for started in ended:
            del self._in_flight[started.runner]  # type: ignore[arg-type]
            state.attempt_ended(started.attempt)
        return sorted(ended, key=lambda started: started.action.pk)

    def _ended(self) -> list[Started]:
        now = time.monotonic()
        return [
            started
            for started, _ in self._in_flight.values()
            if started.job is not None and (started.job.done.is_set() or started.deadline <= now)
        ]

    def _abandon_all(self, reason: str) -> None:
        """Stop waiting for every attempt in flight: asked to stop, their threads run on, results unread."""
        for runner, (started, _) in list(self._in_flight.items()):
            started.attempt.request_stop(reason)
            runner.abandon()
            self.state.attempt_ended(started.attempt)
        self._in_flight.clear()
