"""The AOL daemon: a tick loop run by ``manage.py run_aol_daemon``.

One tick: acquire or renew the lease → read the control flags (killed: release and stop;
paused: record the tick and claim nothing) → recover actions orphaned by an earlier holder →
claim due actions and run them through their adapters, one after another, stopping early when
the tick's time budget is spent, a stop is requested or the operators pause or kill → record the
tick in the ledger.

Claims are sized by how long recent attempts took: a slow action is claimed on its own, fast
ones in batches of up to AOL_CLAIM_BATCH_SIZE that should take about ``BATCH_TARGET_SECONDS``.
Only first attempts that a crash cannot harm join a batch (``action_batchable``); their successes
are recorded together, in one transaction, before the next claim (group commit). What a crash
can redo is therefore at most one batch of fast, idempotent first attempts, and none of them
loses an attempt to it: recovery returns batch-claimed actions uncounted (services/results.py).
Unstarted members of a batch go back to the queue at once on a pause, kill, stop or spent
budget, and when the batch is older than ``BATCH_HOLD_SECONDS``.

Each adapter call runs on a worker thread (``AdapterRunner``) with the tick's deadline. The loop
stops waiting at the deadline, records the attempt as a transient failure ("exceeded its
deadline") and goes on; the abandoned thread cannot be killed, but its result is never recorded
(only the loop records, and only what it waited for). When abandoned threads that are still
alive pile up, the daemon exits with code 5 so that a supervisor restarts a clean process.

Beside the loop, a watchdog thread renews the lease every heartbeat (so a long action does not
lose it) and polls the control flags, so kill and pause take effect between two actions rather
than at the next tick; a kill, a stop request or a lost lease also asks the running attempt to
stop at its next safe point (``Attempt.checkpoint``).

A failure of the daemon's environment is not the action's fault. When the artifact store cannot be
written (``ArtifactStoreUnavailable``: full, read-only or missing), the action goes back to the
queue with its attempt uncounted and claiming pauses: each tick records a BLOCKED row saying why
and probes the directory (``artifacts_dir_probe``), and claiming resumes when the probe passes. A
database error pauses the loop the same way. Both pauses start at ``OUTAGE_BACKOFF_SECONDS`` and
double up to ``OUTAGE_BACKOFF_MAX_SECONDS``; a database outage is logged when it starts, at most
every ``OUTAGE_LOG_SECONDS`` while it lasts, and as one FAIL row in the ledger when it ends.

With ``standby`` a daemon that finds the lease held waits and takes over when it expires or is
released; a standby that is fenced out (lost its lease) goes back to waiting instead of exiting.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import DatabaseError, connection, connections
from django.utils import timezone

from orchestration.adapters import ActionResult, Attempt
from orchestration.adapters.artifacts import artifacts_dir_probe
from orchestration.conf import action_type_settings, aol
from orchestration.dburl import redact
from orchestration.exceptions import (
    ArtifactStoreUnavailable,
    AttemptDeadlineExceeded,
    AttemptInterrupted,
    InvalidAction,
    LeaseHeldElsewhere,
    LeaseNotHeld,
    PermanentAdapterError,
)
from orchestration.models import Action, ActionStatus, ClaimedMode, ControlFlags, TickStatus
from orchestration.services.approval import action_approval_gated, approval_check_proof_run, approval_verify_before_real
from orchestration.services.claim import action_claim_due, action_queue_depth, action_release_unstarted
from orchestration.services.control import control_flags_get
from orchestration.services.enqueue import action_payload_validate
from orchestration.services.lease import lease_acquire_or_renew, lease_owner_new, lease_release, lease_renew
from orchestration.services.ledger import tick_record
from orchestration.services.results import (
    Success,
    action_mark_awaiting_approval,
    action_mark_cancelled_if_requested,
    action_mark_failure,
    action_mark_interrupted,
    action_mark_needs_review,
    action_mark_success_many,
    action_outcome_unknown_policy,
    action_recover_orphans,
)
from orchestration.services.schedules import schedule_fire_due
from orchestration.services.wakeup import WakeupListener, wakeup_supported

logger = logging.getLogger("orchestration")

# Exit codes of run_aol_daemon (documented in the README).
EXIT_OK = 0  # ran its ticks, was killed by the flag, or stopped by SIGINT/SIGTERM/SIGHUP
EXIT_ERROR = 1  # could not start: database unreachable or migrations unapplied
EXIT_USAGE = 2  # invalid arguments
EXIT_LEASE_HELD = 3  # another live daemon holds the lease; nothing was touched
EXIT_LEASE_LOST = 4  # the lease was taken over while running; this daemon stopped writing
EXIT_WEDGED = 5  # adapter threads that overran their deadline pile up; restart the process

# Outcomes of one attempt, for the tick's counts.
SUCCEEDED, FAILED, INTERRUPTED = "succeeded", "failed", "interrupted"
CANCELLED = "cancelled"  # stopped on an operator's request (not counted as attempted, like INTERRUPTED)
BLOCKED = "blocked"  # the artifact store failed, not the action (not counted as attempted)
#: The stop reason handed to an attempt whose action an operator cancelled.
CANCEL_REQUESTED = "cancel requested by an operator"


#: How often a tick's ledger row also records the queue depth per open status.
QUEUE_DEPTH_SAMPLE_SECONDS = 30.0

#: A claim takes as many actions as recent attempts suggest can run in this time (at least one).
BATCH_TARGET_SECONDS = 0.2
#: Claimed actions not started within this time go back to the queue (a slow one held the rest up).
BATCH_HOLD_SECONDS = 1.0
#: Weight of the newest attempt in the running average of attempt times that sizes claims.
ATTEMPT_TIME_WEIGHT = 0.2

#: After an environment failure (artifact store or database unusable) the loop waits this long, or
#: the tick interval if that is longer, before it checks again; each failed check doubles the wait,
#: up to the maximum, which also bounds how long work takes to resume after the outage ends.
OUTAGE_BACKOFF_SECONDS = 1.0
OUTAGE_BACKOFF_MAX_SECONDS = 60.0
#: While a database outage lasts, a line saying so is logged at most this often.
OUTAGE_LOG_SECONDS = 60.0


def outage_backoff_seconds(failures: int) -> float:
    """The wait after ``failures`` failed checks in a row: 1, 2, 4, … seconds, at most the maximum."""
    return min(OUTAGE_BACKOFF_MAX_SECONDS, OUTAGE_BACKOFF_SECONDS * 2 ** max(0, min(failures - 1, 16)))


@dataclass(frozen=True)
class DaemonConfig:
    """What one daemon runs with; its defaults are the AOL settings' (``from_settings``)."""

    owner: str
    force_proof: bool
    max_ticks: int | None
    interval_seconds: float
    max_actions_per_tick: int
    claim_batch_size: int
    max_tick_seconds: float
    heartbeat_seconds: float
    lease_ttl_seconds: float
    control_poll_seconds: float
    standby: bool
    max_abandoned_threads: int
    wake_on_enqueue: bool

    @classmethod
    def from_settings(cls, **overrides: Any) -> "DaemonConfig":
        """The configuration from AOL_* settings, with command-line ``overrides`` (None = unset)."""
        values: dict[str, Any] = {
            "owner": lease_owner_new(),
            "force_proof": False,
            "max_ticks": aol.max_ticks,
            "interval_seconds": aol.tick_interval_seconds,
            "max_actions_per_tick": aol.max_actions_per_tick,
            "claim_batch_size": aol.claim_batch_size,
            "max_tick_seconds": aol.max_tick_seconds,
            "heartbeat_seconds": aol.heartbeat_seconds,
            "lease_ttl_seconds": aol.lease_ttl_seconds,
            "control_poll_seconds": aol.control_poll_seconds,
            "standby": False,
            "max_abandoned_threads": aol.max_abandoned_threads,
            "wake_on_enqueue": aol.wake_on_enqueue,
        }
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass
class Outage:
    """An environment failure that pauses claiming: since when, how many failed checks, the last error."""

    detail: str
    failures: int = 1
    retry_in_seconds: float = OUTAGE_BACKOFF_SECONDS
    started: float = field(default_factory=time.monotonic)
    logged: float = field(default_factory=time.monotonic)

    def seconds(self) -> float:
        return time.monotonic() - self.started


@dataclass
class TickReport:
    number: int
    status: str
    attempted: int = 0
    succeeded: int = 0
    duration_seconds: float = 0.0
    notes: str = ""
    stop: bool = False  # the daemon must exit after this tick (kill flag)

    def line(self) -> str:
        text = (
            f"[AOL Tick {self.number}] {self.status} | Actions: {self.attempted} attempted, "
            f"{self.succeeded} succeeded | Duration: {self.duration_seconds:.2f}s"
        )
        return f"{text} | {self.notes}" if self.notes else text


class Daemon:
    """Runs ticks until its tick limit, a stop request, the kill flag, or the loss of its lease."""

    def __init__(self, config: DaemonConfig, *, out: Callable[[str], None] | None = None):
        self.config = config
        self.out = out or logger.info
        self.token: int | None = None
        self._stop = threading.Event()  # set by request_stop()
        self._stop_reason = ""
        self._wake = threading.Event()  # ends the sleep between ticks early
        self._notified = threading.Event()  # actions were enqueued since the last claim (PostgreSQL)
        self._listener: WakeupListener | None = None
        self._flags_seen = {"paused": False, "killed": False}  # written by the watchdog
        self._lease_lost = threading.Event()  # set by the watchdog when a renewal is refused
        self._attempt: Attempt | None = None  # the attempt running now, if any
        self._progress = time.monotonic()  # the loop's own heartbeat, read by the watchdog
        self._runner = AdapterRunner()
        self._wedged = False
        self._watchdog: _Watchdog | None = None
        self._depth_sampled_at: float | None = None
        self._standby_holder: str | None = None
        self._unrecorded: list[Success] = []  # successes of batch-claimed actions, recorded together
        self._attempt_seconds: float | None = None  # running average, sizes the next claim
        self._cancel_requested: frozenset[int] = frozenset()  # RUNNING ids; written by the watchdog
        self._pause_seconds = 0.0  # the wait between ticks in progress, read by the watchdog
        self._db_outage: Outage | None = None  # the database failed the loop; read by the watchdog
        self._store_outage: Outage | None = None  # the artifact store failed an attempt
        self._store_failures = 0  # failed artifact writes and probes since the last success

    # --- control from outside ------------------------------------------------------------------

    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop after the running attempt, then release the lease and exit (from any thread, not from
        a signal handler: it sets events whose locks the interrupted thread may hold).

        An adapter that checks its ``Attempt`` stops at its next safe point and its action goes back
        to the queue uncounted; one that does not check is let finish, within its deadline.
        """
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()
        self._interrupt(reason)

    def _interrupt(self, reason: str) -> None:
        """Ask the running attempt to stop at its next safe point, and end the loop's sleep."""
        attempt = self._attempt
        if attempt is not None:
            attempt.request_stop(reason)
        self._wake.set()

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        """Tick until done; returns the process exit code."""
        number = 0
        self._start_watchdog()
        self._start_listener()
        try:
            while not self._stop.is_set():
                self._wake.clear()
                self._notified.clear()  # what is enqueued from now on wakes the next sleep
                self._progress = time.monotonic()
                report = None
                try:
                    self._check_connection()
                    report = self.tick(number)
                except LeaseHeldElsewhere as exc:
                    self._database_back()
                    if not self.config.standby:
                        self.out(
                            f"[AOL] Lease held by {exc.holder} until {exc.expires_at:%Y-%m-%d %H:%M:%S} UTC: "
                            "another daemon is running. Exiting without touching anything."
                        )
                        return EXIT_LEASE_HELD
                    if self._standby_wait(exc):
                        return EXIT_OK
                    continue
                except LeaseNotHeld as exc:
                    self.token = None  # nothing of ours left to release
                    self._database_back()
                    if not self.config.standby:
                        self.out(f"[AOL] Lost the lease ({exc}); stopped writing. Exiting.")
                        return EXIT_LEASE_LOST
                    self.out(f"[AOL] Lost the lease ({exc}); stopped writing. Back to standby.")
                    self._lease_lost.clear()
                except DatabaseError as exc:
                    self._database_failed(number, exc)
                if report is not None:
                    self.out(report.line())
                    if report.stop:
                        return EXIT_OK
                if self._wedged:
                    self.out(
                        f"[AOL] {self._runner.abandoned_alive()} adapter thread(s) that overran their deadline are "
                        f"still running (limit AOL_MAX_ABANDONED_THREADS={self.config.max_abandoned_threads}). "
                        "Exiting so that a supervisor restarts a clean process."
                    )
                    return EXIT_WEDGED
                number += 1
                if self.config.max_ticks is not None and number >= self.config.max_ticks:
                    return EXIT_OK
                self._sleep(
                    busy=report is not None and report.attempted >= self.config.max_actions_per_tick,
                    pause_seconds=self._outage_pause(),
                )
            self.out(f"[AOL] Stopping: {self._stop_reason}.")
            return EXIT_OK
        finally:
            self._shutdown()

    def _sleep(self, *, busy: bool, pause_seconds: float | None = None) -> None:
        """Wait one tick interval, or less: a stop, kill or lost lease ends the wait at once, and so
        do actions enqueued since the last claim (PostgreSQL), unless the last tick was ``busy``
        (it used its whole AOL_MAX_ACTIONS_PER_TICK): then the interval keeps its pace.

        With ``pause_seconds`` (an outage's backoff) the wait lasts that long if it is longer than
        the interval, and enqueued actions do not end it: they could not be run yet.
        """
        seconds = max(self.config.interval_seconds, pause_seconds or 0.0)
        busy = busy or pause_seconds is not None
        self._pause_seconds = seconds
        deadline = time.monotonic() + seconds
        while not (self._notified.is_set() and not busy):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._wake.wait(remaining):
                return
            self._wake.clear()
            if not self._notified.is_set() or self._stop.is_set() or self._flags_seen["killed"]:
                return  # woken for another reason than an enqueue

    def _on_notify(self) -> None:
        self._notified.set()
        self._wake.set()

    def _start_listener(self) -> None:
        if self.config.wake_on_enqueue and self._listener is None and wakeup_supported():
            self._listener = WakeupListener(self._on_notify)
            self._listener.start()

    def _standby_wait(self, exc: LeaseHeldElsewhere) -> bool:
        """Wait one interval for the lease; True when the daemon must exit instead (kill flag)."""
        if self._standby_holder != exc.holder:
            self._standby_holder = exc.holder
            self.out(
                f"[AOL] Standby: lease held by {exc.holder} until {exc.expires_at:%Y-%m-%d %H:%M:%S} UTC; "
                "waiting to take over."
            )
        self._sleep(busy=True)  # enqueued work is not ours to claim yet
        if self._flags_seen["killed"]:
            self.out("[AOL] Kill flag set; the standby daemon stops.")
            return True
        return False

    def tick(self, number: int) -> TickReport:
        """One pass of the loop; raises LeaseHeldElsewhere / LeaseNotHeld when it may not work."""
        report = TickReport(number=number, status=TickStatus.SUCCESS)
        clock = time.monotonic()
        self._ensure_lease()
        self._database_back()
        flags = control_flags_get()
        self._flags_seen.update(paused=flags.paused, killed=flags.killed)
        if flags.killed:
            report.status, report.stop = TickStatus.KILLED, True
            report.notes = f"kill flag set by {flags.updated_by or 'an operator'}; lease released"
        elif flags.paused:
            report.status = TickStatus.PAUSED
            report.notes = f"paused by {flags.updated_by or 'an operator'}"
        else:
            # While holding the lease, queue the due periods of schedules before claiming.
            fired = schedule_fire_due(token=self.token, actor=self.config.owner)
            resumed = self._store_probe()
            if self._store_outage is None:
                self._work(report, proof=self._proof(flags), deadline=clock + self.config.max_tick_seconds)
            report.notes = "; ".join(filter(None, [report.notes, fired.note(), resumed]))
            if self._store_outage is not None:
                report.status = TickStatus.BLOCKED
                report.notes = "; ".join(filter(None, [self._store_note(), report.notes]))
            if self._flags_seen["killed"]:
                report.status, report.stop = TickStatus.KILLED, True
                report.notes = "; ".join(filter(None, [report.notes, "lease released"]))
        report.duration_seconds = time.monotonic() - clock
        recorded = tick_record(
            duration_seconds=report.duration_seconds,
            status=report.status,
            attempted=report.attempted,
            succeeded=report.succeeded,
            owner=self.config.owner,
            token=self.token,
            notes=report.notes,
            queue_depth=self._sample_queue_depth(),
        )
        if not recorded:
            raise LeaseNotHeld(f"lease token {self.token} is no longer current; tick not recorded")
        if report.stop:
            self._release_lease()
        return report

    # --- inside a tick -----------------------------------------------------------------------------

    def _sample_queue_depth(self) -> dict[str, int] | None:
        """Open actions per status for the console's depth chart, counted at most every
        QUEUE_DEPTH_SAMPLE_SECONDS: the chart needs a point every so often, not one per tick."""
        now = time.monotonic()
        if self._depth_sampled_at is not None and now - self._depth_sampled_at < QUEUE_DEPTH_SAMPLE_SECONDS:
            return None
        self._depth_sampled_at = now
        return action_queue_depth()

    def _ensure_lease(self) -> None:
        result = lease_acquire_or_renew(
            owner=self.config.owner, ttl_seconds=self.config.lease_ttl_seconds, token=self.token
        )
        if not result.ok:
            if self.token is None:
                raise LeaseHeldElsewhere(result.reason, holder=result.holder, expires_at=result.expires_at)
            raise LeaseNotHeld(f"lease lost to {result.holder}")
        self._lease_lost.clear()
        if result.acquired:
            self.token = result.token
            self._standby_holder = None
            self.out(f"[AOL] Lease acquired: token {result.token} ({result.reason}).")
            recovered = action_recover_orphans(token=self.token, actor=self.config.owner)
            if recovered.retried or recovered.dead or recovered.review or recovered.cancelled:
                total = len(recovered.retried) + len(recovered.dead) + len(recovered.review) + len(recovered.cancelled)
                self.out(
                    f"[AOL] Recovered {total} action(s) left RUNNING by an earlier holder: "
                    f"{len(recovered.retried)} to RETRY, {len(recovered.dead)} to DLQ, "
                    f"{len(recovered.review)} to NEEDS_REVIEW"
                    + (f", {len(recovered.cancelled)} CANCELLED on request." if recovered.cancelled else ".")
                )

    def _proof(self, flags: ControlFlags) -> bool:
        # PROOF wins whenever any source asks for it.
        return self.config.force_proof or bool(aol.proof_mode) or flags.proof_mode

    def _work(self, report: TickReport, *, proof: bool, deadline: float) -> None:
        budget = self.config.max_actions_per_tick  # attempts this tick may still claim
        batch: list[Action] = []  # claimed, not started yet
        claimed_at = 0.0
        try:
            while True:
                reason = self._interruption(deadline)
                if reason:
                    report.notes = f"{reason}; no further action started"
                    break
                if batch and time.monotonic() - claimed_at > BATCH_HOLD_SECONDS:
                    budget += self._release(batch)  # held up by a slow one: claim afresh
                if not batch:
                    self._record_unrecorded()  # before claiming more: a crash redoes at most one batch
                    if budget <= 0:
                        break
                    batch = action_claim_due(
                        owner=self.config.owner, token=self.token, limit=self._claim_size(budget), proof=proof
                    )
                    if not batch:
                        break
                    budget -= len(batch)
                    claimed_at = time.monotonic()
                action = batch.pop(0)
                started = time.monotonic()
                outcome = self._dispatch(action, proof=proof, deadline=deadline)
                self._progress = time.monotonic()
                self._observe_attempt(self._progress - started)
                if outcome not in (INTERRUPTED, CANCELLED, BLOCKED):
                    report.attempted += 1
                if outcome == SUCCEEDED:
                    report.succeeded += 1
            self._record_unrecorded()
            self._release(batch)
        except BaseException:
            # Not recorded: the next lease holder's recovery returns these actions to the queue.
            self._unrecorded = []
            raise
        if report.attempted and report.succeeded == 0:
            report.status = TickStatus.FAIL
        elif report.succeeded < report.attempted:
            report.status = TickStatus.PARTIAL
        if proof and report.attempted:
            report.notes = "; ".join(filter(None, ["PROOF", report.notes]))

    def _claim_size(self, budget: int) -> int:
        """How many actions the next claim takes: about BATCH_TARGET_SECONDS of recent attempt times."""
        if self._attempt_seconds is None:
            return 1  # nothing measured yet
        fits = int(BATCH_TARGET_SECONDS / max(self._attempt_seconds, 1e-6))
        return max(1, min(fits, budget, self.config.claim_batch_size))

    def _observe_attempt(self, seconds: float) -> None:
        if self._attempt_seconds is None:
            self._attempt_seconds = seconds
        else:
            self._attempt_seconds += ATTEMPT_TIME_WEIGHT * (seconds - self._attempt_seconds)

    def _release(self, batch: list[Action]) -> int:
        """Give claimed, unstarted actions back to the queue (attempt uncounted); returns how many."""
        released = action_release_unstarted(actions=batch, token=self.token) if batch else 0
        batch.clear()
        return released

    def _record_unrecorded(self) -> None:
        """Record the successes waiting in ``_unrecorded`` in one transaction (fenced)."""
        if self._unrecorded:
            successes, self._unrecorded = self._unrecorded, []
            action_mark_success_many(successes=successes, token=self.token, actor=self.config.owner)

    def _interruption(self, deadline: float) -> str:
        """Why the tick must not start another action, or '' if it may."""
        if self._stop.is_set():
            return self._stop_reason
        if self._flags_seen["killed"]:
            return "kill flag set"
        if self._flags_seen["paused"]:
            return "paused"
        if self._lease_lost.is_set():
            return "lease renewal refused"
        if self._wedged:
            return "too many abandoned adapter threads"
        if self._store_outage is not None:
            return "artifact store unavailable"
        if time.monotonic() >= deadline:
            return f"tick budget of {self.config.max_tick_seconds:g}s spent"
        return ""

    def _dispatch(self, action: Action, *, proof: bool, deadline: float) -> str:
        """Run one attempt on the worker thread and record its outcome (fencing errors propagate)."""
        if action.pk in self._cancel_requested and self._cancel_if_requested(
            action, outcome="did not start (it was still waiting in a claimed batch)"
        ):
            return CANCELLED
        # The claim decides the attempt's mode: a REAL daemon runs an action gated by approval in
        # PROOF first, to make the artifact a person approves (services/approval.py).
        for_approval = not proof and action.claimed_mode == ClaimedMode.PROOF
        timeout = action_type_settings(action.action_type).timeout_seconds
        type_deadline = time.monotonic() + timeout if timeout is not None else None
        attempt_deadline = deadline if type_deadline is None else min(deadline, type_deadline)
        overrun = self._overrun_message(
            action, timeout=timeout if type_deadline is not None and type_deadline < deadline else None
        )
        attempt = Attempt(
            idempotency_key=action.idempotency_key,
            number=action.attempts,
            proof=proof or for_approval,
            deadline=attempt_deadline,
            action_id=action.pk,
        )
        self._attempt = attempt
        # A kill, stop or lost lease that came in since the last check (pause lets it run).
        if self._stop.is_set() or self._flags_seen["killed"] or self._lease_lost.is_set():
            attempt.request_stop(self._stop_reason or ("kill flag set" if self._flags_seen["killed"] else "lease lost"))
        try:
            job = self._runner.call(partial(_execute, action, attempt, for_approval), deadline=attempt_deadline)
        finally:
            self._attempt = None
        if not job.done.is_set():
            self._record_unrecorded()
            # Overran: stop waiting. The thread runs on but nobody will read its result.
            attempt.request_stop("deadline exceeded")
            self._runner.abandon()
            if self._runner.abandoned_alive() >= self.config.max_abandoned_threads:
                self._wedged = True
            return self._record_unknown_outcome(action, AttemptDeadlineExceeded(overrun))
        if job.error is None and not for_approval:
            self._record_success(action, job.result)
            self._store_failures = 0
            return SUCCEEDED
        self._record_unrecorded()  # keep the order of results: earlier successes first
        if job.error is None:
            return self._record_awaiting_approval(action, job.result)
        exc = job.error
        if isinstance(exc, ArtifactStoreUnavailable):
            return self._record_store_unavailable(action, exc)
        if isinstance(exc, AttemptInterrupted):
            if self._cancel_if_requested(action, outcome=f"stopped at a safe point ({exc})"):
                return CANCELLED
            action_mark_interrupted(action=action, token=self.token, actor=self.config.owner, reason=str(exc))
            logger.info("action id=%s type=%s interrupted: %s", action.pk, action.action_type, exc)
            return INTERRUPTED
        if isinstance(exc, AttemptDeadlineExceeded):
            return self._record_unknown_outcome(action, AttemptDeadlineExceeded(overrun))
        if self._cancel_if_requested(action, outcome=f"failed: {type(exc).__name__}: {exc}"):
            return CANCELLED
        permanent = isinstance(exc, InvalidAction) or getattr(exc, "permanent", False)
        if not permanent and not hasattr(exc, "permanent"):
            logger.error(
                "action id=%s type=%s raised unexpectedly",
                action.pk,
                action.action_type,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        status = action_mark_failure(
            action=action,
            token=self.token,
            actor=self.config.owner,
            error=f"{type(exc).__name__}: {exc}",
            permanent=permanent,
        )
        logger.info("action id=%s type=%s status=%s error=%s", action.pk, action.action_type, status, exc)
        return FAILED

    def _overrun_message(self, action: Action | None = None, *, timeout: float | None = None) -> str:
        if timeout is not None and action is not None:
            return (
                f"exceeded its deadline (the {action.action_type} timeout of {timeout:g}s, "
                "AOL_ACTION_TYPES) and was abandoned"
            )
        return (
            f"exceeded its deadline (the tick budget of {self.config.max_tick_seconds:g}s, "
            "AOL_MAX_TICK_SECONDS) and was abandoned"
        )

    def _cancel_if_requested(self, action: Action, *, outcome: str) -> bool:
        if not action_mark_cancelled_if_requested(
            action=action, token=self.token, actor=self.config.owner, outcome=outcome
        ):
            return False
        logger.info(
            "action id=%s type=%s status=%s (%s)", action.pk, action.action_type, ActionStatus.CANCELLED, outcome
        )
        return True

    def _record_awaiting_approval(self, action: Action, result: ActionResult) -> str:
        """A gated action's PROOF run is done: park it for a person, or fail it if it made no artifact."""
        if self._cancel_if_requested(action, outcome="made its PROOF artifact, but was cancelled before approval"):
            return CANCELLED
        if not result.artifact_ref or not result.artifact_sha256:
            action_mark_failure(
                action=action,
                token=self.token,
                actor=self.config.owner,
                error="the PROOF run for approval made no artifact, so there is nothing to approve",
                permanent=True,
            )
            return FAILED
        action_mark_awaiting_approval(
            action=action,
            token=self.token,
            actor=self.config.owner,
            artifact_ref=result.artifact_ref,
            artifact_sha256=result.artifact_sha256,
        )
        logger.info(
            "action id=%s type=%s status=%s sha256=%s",
            action.pk,
            action.action_type,
            ActionStatus.AWAITING_APPROVAL,
            result.artifact_sha256,
        )
        return SUCCEEDED

    def _record_success(self, action: Action, result: ActionResult) -> None:
        """Record a success now, or, for a batch-claimed action, with the rest of its batch."""
        message, ref, sha256 = result.message, result.artifact_ref, result.artifact_sha256
        if action.approved_at is not None and action.claimed_mode == ClaimedMode.REAL:
            # Name what a person approved beside what was done.
            message = f"{message} (approved by {action.approved_by or '?'}: sha256 {action.approval_sha256})"
            ref, sha256 = ref or action.approval_artifact_ref, sha256 or action.approval_sha256
        self._unrecorded.append(Success(action, message, ref, sha256, finished_at=timezone.now()))
        if not action.claimed_in_batch:
            self._record_unrecorded()
        logger.info(
            "action id=%s type=%s status=%s artifact=%s",
            action.pk,
            action.action_type,
            ActionStatus.SUCCESS,
            result.artifact_ref or "-",
        )

    def _record_unknown_outcome(self, action: Action, exc: Exception) -> str:
        """An attempt that may or may not have had its effect: retry it, or park it for review.

        A cancel request ends it CANCELLED instead of retrying, unless a person must look at it.
        """
        error = f"{type(exc).__name__}: {exc}"
        policy = action_outcome_unknown_policy(action_type=action.action_type, claimed_mode=action.claimed_mode)
        if policy == ActionStatus.NEEDS_REVIEW:
            action_mark_needs_review(action=action, token=self.token, actor=self.config.owner, error=error)
            status = ActionStatus.NEEDS_REVIEW
        elif self._cancel_if_requested(action, outcome=f"failed: {error}"):
            return CANCELLED
        else:
            status = action_mark_failure(
                action=action, token=self.token, actor=self.config.owner, error=error, permanent=False
            )
        logger.warning("action id=%s type=%s status=%s error=%s", action.pk, action.action_type, status, exc)
        return FAILED

    # --- environment failures -----------------------------------------------------------------------

    def _record_store_unavailable(self, action: Action, exc: ArtifactStoreUnavailable) -> str:
        """The artifact store failed, not the action: return it to the queue uncounted and pause claiming."""
        self._store_failures += 1
        if self._store_outage is None:
            self._store_outage = Outage(detail=str(exc), retry_in_seconds=outage_backoff_seconds(self._store_failures))
            logger.error("artifact store unavailable, claiming paused (attempts not counted): %s", exc)
            self.out(
                f"[AOL] Artifact store unavailable: claiming paused, attempts not counted; checking again "
                f"with a backoff of up to {OUTAGE_BACKOFF_MAX_SECONDS:g}s. {exc}"
            )
        if self._cancel_if_requested(action, outcome=f"not run: {exc}"):
            return CANCELLED
        action_mark_interrupted(
            action=action, token=self.token, actor=self.config.owner, reason=f"artifact store unavailable: {exc}"
        )
        logger.info("action id=%s type=%s returned to the queue uncounted: %s", action.pk, action.action_type, exc)
        return BLOCKED

    def _store_probe(self) -> str:
        """While the artifact store is out, probe it; when it passes, end the outage and say so."""
        outage = self._store_outage
        if outage is None:
            return ""
        problem = artifacts_dir_probe()
        if problem:
            self._store_failures += 1
            outage.failures += 1
            outage.detail = str(problem)
            outage.retry_in_seconds = outage_backoff_seconds(self._store_failures)
            return ""
        self._store_outage = None
        message = f"artifact store available again after {outage.seconds():.0f}s; claiming resumed"
        logger.warning("%s (%s failed checks)", message, outage.failures)
        self.out(f"[AOL] {message[0].upper()}{message[1:]}.")
        return message

    def _store_note(self) -> str:
        outage = self._store_outage
        return (
            f"claiming paused: artifact store unavailable for {outage.seconds():.0f}s "
            f"({outage.failures} failed check(s); next in {outage.retry_in_seconds:g}s): {outage.detail}"
        )

    def _database_failed(self, number: int, exc: DatabaseError) -> None:
        """Keep the process: drop the connection, back off, and start a new lease tenure when the
        database answers again (its recovery returns whatever was left RUNNING to the queue).

        Logged when the outage starts and then at most every OUTAGE_LOG_SECONDS, not per retry.
        """
        self._close_connection()
        self.token = None
        name = type(exc).__name__
        detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        outage = self._db_outage
        if outage is None:
            outage = self._db_outage = Outage(detail=f"{name}: {detail}")
            logger.error("tick=%s database error, claiming paused: %s %s", number, name, detail)
            self.out(
                f"[AOL Tick {number}] FAIL | database error ({name}); retrying in "
                f"{max(self.config.interval_seconds, outage.retry_in_seconds):g}s, backing off up to "
                f"{max(self.config.interval_seconds, OUTAGE_BACKOFF_MAX_SECONDS):g}s"
            )
            return
        outage.failures += 1
        outage.detail = f"{name}: {detail}"
        outage.retry_in_seconds = outage_backoff_seconds(outage.failures)
        if time.monotonic() - outage.logged >= OUTAGE_LOG_SECONDS:
            outage.logged = time.monotonic()
            logger.error(
                "database still unavailable after %.0fs (%s failed attempts): %s %s",
                outage.seconds(),
                outage.failures,
                name,
                detail,
            )
            self.out(
                f"[AOL] Database still unavailable after {outage.seconds():.0f}s ({outage.failures} failed "
                f"attempts, {name}); retrying in {max(self.config.interval_seconds, outage.retry_in_seconds):g}s"
            )

    def _database_back(self) -> None:
        """The database answered after an outage: say how long it lasted, once, also in the ledger."""
        outage = self._db_outage
        if outage is None:
            return
        notes = (
            f"database unavailable for {outage.seconds():.1f}s ({outage.failures} failed attempt(s), "
            f"backing off up to {OUTAGE_BACKOFF_MAX_SECONDS:g}s; last error {outage.detail}); resumed"
        )
        if self.token is not None:
            tick_record(
                duration_seconds=outage.seconds(),
                status=TickStatus.FAIL,
                attempted=0,
                succeeded=0,
                owner=self.config.owner,
                token=self.token,
                notes=notes,
            )
        self._db_outage = None
        logger.warning("%s", notes)
        self.out(f"[AOL] Database available again: {notes}.")

    def _outage_pause(self) -> float | None:
        """How long to wait before the next tick while an outage lasts; None when there is none."""
        pauses = [outage.retry_in_seconds for outage in (self._db_outage, self._store_outage) if outage is not None]
        return max(pauses) if pauses else None

    # --- lease keeping -------------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = _Watchdog(self)
            self._watchdog.start()

    def _release_lease(self) -> None:
        if self.token is not None:
            lease_release(owner=self.config.owner, token=self.token)
            self.token = None

    def _check_connection(self) -> None:
        """Keep the loop's connection from tick to tick; drop it only if an error left it unusable.

        ``close_old_connections()`` would close it on every tick under the default CONN_MAX_AGE=0,
        and reconnecting (a new PostgreSQL backend process) cost more than an idle tick's queries.
        A connection that broke while idle (a database restart) fails the next tick with a
        DatabaseError, which closes it; the tick after that reconnects.
        """
        if connection.connection is not None and connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                self._close_connection()

    def _close_connection(self) -> None:
        try:
            connection.close()
        except DatabaseError:
            pass  # the connection is already gone; Django opens a new one on next use

    def _shutdown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._listener is not None:
            self._listener.stop()
        self._runner.close()
        try:
            self._release_lease()
        except DatabaseError as exc:
            logger.error("could not release the lease on exit (it expires on its own): %s", redact(str(exc)))
        self._close_connection()


def _execute(action: Action, attempt: Attempt, for_approval: bool = False) -> ActionResult:
    """Validate the stored payload again and run the adapter (on the worker thread).

    The approval gate's checks run here, just before the adapter: a PROOF run for approval needs an
    adapter that can re-render its artifact; a REAL run of an approved action must render exactly
    the approved content; a REAL run of a gated action that nobody approved is refused.
    """
    adapter, _ = action_payload_validate(action_type=action.action_type, payload=action.payload)
    if for_approval:
        approval_check_proof_run(adapter=adapter, action=action)
    elif not attempt.proof and action.approved_at is not None:
        approval_verify_before_real(adapter=adapter, action=action)
    elif not attempt.proof and action_approval_gated(action=action):
        raise PermanentAdapterError(f"{action.action_type} requires approval before it runs for real; not run")
    return adapter.execute(action, attempt=attempt)


class _Job:
    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


def _worker(jobs: "queue.SimpleQueue[_Job | None]") -> None:
    try:
        while (job := jobs.get()) is not None:
            try:
                job.result = job.fn()
            except BaseException as exc:  # handed to the loop, which decides what it means
                job.error = exc
            finally:
                job.done.set()
    finally:
        connections.close_all()  # this thread's connections, if an adapter used the database


class AdapterRunner:
    """Runs adapter calls on one long-lived worker thread, so the loop can stop waiting at a deadline.

    A call costs a queue hand-over, not a new thread. A call that overruns is abandoned: Python
    cannot kill a thread, so it runs on, but its result is never read; the next call starts a
    fresh worker. ``abandoned_alive()`` counts abandoned threads that are still running.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] | None = None
        self._thread: threading.Thread | None = None
        self._abandoned: list[threading.Thread] = []

    def call(self, fn: Callable[[], Any], *, deadline: float) -> _Job:
        """Run ``fn`` and wait until it is done or ``deadline`` (monotonic) passes; check ``job.done``."""
        if self._thread is None:
            self._jobs = queue.SimpleQueue()
            self._thread = threading.Thread(target=_worker, args=(self._jobs,), name="aol-adapter", daemon=True)
            self._thread.start()
        job = _Job(fn)
        self._jobs.put(job)
        # Event.wait is woken by nothing but the job; signal handlers still run meanwhile.
        job.done.wait(max(0.0, deadline - time.monotonic()))
        return job

    def abandon(self) -> None:
        """Give up on the running call; its thread exits when (if ever) the call returns."""
        if self._thread is not None:
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


class _Watchdog(threading.Thread):
    """Renews the lease every heartbeat and polls the control flags while the loop works or sleeps.

    It never dies of an error: a database error is logged (without secrets; once, then at most
    every OUTAGE_LOG_SECONDS) and retried at the next poll; while the loop backs off from a
    database outage the watchdog leaves the database alone too, so the loop's backoff bounds the
    connection attempts. While the database is away the lease simply is not renewed, and fencing
    keeps a successor safe. It stops renewing when the loop itself makes no progress for longer
    than a tick, its pause and one TTL can explain, so that a wedged process lets a standby take over.
    """

    def __init__(self, daemon: Daemon):
        super().__init__(name="aol-watchdog", daemon=True)
        self.owner = daemon
        self._halt = threading.Event()
        self._stuck_logged = False
        self._failing_since: float | None = None  # first of the database errors in a row
        self._error_logged = 0.0

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        config = self.owner.config
        next_renewal = time.monotonic() + config.heartbeat_seconds
        try:
            while not self._halt.wait(min(config.control_poll_seconds, config.heartbeat_seconds)):
                if self.owner._db_outage is not None:
                    if connection.connection is not None:
                        self._close_connection()  # likely broken too; reconnect afresh after the outage
                    continue
                try:
                    self._poll_flags()
                    if time.monotonic() >= next_renewal:
                        next_renewal = time.monotonic() + config.heartbeat_seconds
                        self._renew()
                    if self._failing_since is not None:
                        logger.info("watchdog reached the database again after %.0fs", self._since_failing())
                        self._failing_since = None
                except DatabaseError as exc:
                    now = time.monotonic()
                    if self._failing_since is None or now - self._error_logged >= OUTAGE_LOG_SECONDS:
                        logger.warning(
                            "watchdog database error (will retry)%s: %s",
                            f" for {self._since_failing():.0f}s" if self._failing_since is not None else "",
                            redact(str(exc).strip()),
                        )
                        self._error_logged = now
                    if self._failing_since is None:
                        self._failing_since = now
                    self._close_connection()
                except Exception:
                    logger.exception("watchdog error (will retry)")
        finally:
            connection.close()  # this thread's own connection

    @staticmethod
    def _close_connection() -> None:
        try:
            connection.close()
        except DatabaseError:
            pass

    def _since_failing(self) -> float:
        return time.monotonic() - self._failing_since if self._failing_since is not None else 0.0

    def _poll_flags(self) -> None:
        flags = ControlFlags.objects.filter(pk=ControlFlags.SINGLETON_ID).values("paused", "killed").first()
        if flags is None:
            return
        self.owner._flags_seen.update(flags)
        token = self.owner.token
        if token is not None and self.owner._attempt is not None:
            # Actions an operator cancelled while claimed by us: the loop does not start those still
            # waiting in a claimed batch, and the running attempt is asked to stop at a safe point.
            self.owner._cancel_requested = cancelled = frozenset(
                Action.objects.filter(status=ActionStatus.RUNNING, lease_token=token, cancel_requested=True)
                .order_by()
                .values_list("pk", flat=True)
            )
            attempt = self.owner._attempt
            if attempt is not None and attempt.action_id in cancelled and not attempt.stop.is_set():
                attempt.request_stop(CANCEL_REQUESTED)
        if flags["killed"]:
            # Wake the loop from its sleep so the next tick records the kill at once, and ask the
            # running attempt to stop at a safe point. A tick in progress sees _flags_seen (killed
            # or paused) and starts no further action.
            self.owner._interrupt("kill flag set")

    def _renew(self) -> None:
        daemon, config = self.owner, self.owner.config
        token = daemon.token
        if token is None:
            return
        stalled = time.monotonic() - daemon._progress
        # An outage's backoff is a pause, not a stall (it may be longer than the interval).
        pause = max(config.interval_seconds, daemon._pause_seconds)
        if stalled > config.max_tick_seconds + pause + config.lease_ttl_seconds:
            if not self._stuck_logged:
                self._stuck_logged = True
                logger.error("daemon loop made no progress for %.0fs; not renewing lease token=%s", stalled, token)
            return
        self._stuck_logged = False
        if not lease_renew(owner=config.owner, token=token, ttl_seconds=config.lease_ttl_seconds):
            if daemon.token == token:  # not a new tenure that began meanwhile
                logger.error("heartbeat could not renew lease token=%s: it expired or was taken over", token)
                daemon._lease_lost.set()
                daemon._interrupt("lease lost")
