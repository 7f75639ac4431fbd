"""The AOL daemon's tick loop (``Daemon``), run by ``manage.py run_aol_daemon``.

One tick: acquire or renew the lease → read the control flags (killed: release and stop;
paused: record the tick and claim nothing) → recover actions orphaned by an earlier holder →
fire due schedules → claim due actions and run them one after another (dispatch.py), or in REAL
mode with AOL_REAL_CONCURRENCY > 1 up to that many at once, never two of one account
(scheduler.py), stopping early when the tick's time budget is spent, a stop is requested or the
operators pause or kill → record the tick in the ledger.

Claims are sized by how long recent attempts took: a slow action is claimed on its own, fast
ones in batches of up to AOL_CLAIM_BATCH_SIZE that should take about ``BATCH_TARGET_SECONDS``.
Only first attempts that a crash cannot harm join a batch (``action_batchable``); their successes
are recorded together before the next claim (``BatchRecorder``), so a crash redoes at most one
batch. Unstarted members of a batch go back to the queue at once on a pause, kill, stop or spent
budget, and when the batch is older than ``BATCH_HOLD_SECONDS``.

Beside the loop run the watchdog (watchdog.py: lease renewal, flag polling) and, on PostgreSQL,
the wake-up listener (wakeup.py); they share ``DaemonState`` (state.py) with the loop. When abandoned
adapter threads pile up (runner.py) the daemon exits with code 5 so a supervisor restarts it.

A failure of the daemon's environment (the artifact store, the database) is not the action's fault:
claiming pauses with a backoff until it passes (outages.py).

With ``wait_when_killed`` (``run_aol_daemon --wait-when-killed``, as ``make run`` starts it) the kill
flag stops the work as usual (the running attempt is asked to stop, nothing more is claimed) but does
not end the process: the daemon keeps its lease, renewed by the watchdog, so the console shows who
waits, and resumes within a flag poll of a revive. Under a supervisor that ends everything when one
process exits (honcho), exiting would take the web console down with it.

With ``standby`` a daemon that finds the lease held waits and takes over when it expires or is
released; a standby that is fenced out (lost its lease) goes back to waiting instead of exiting.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import DatabaseError, connection

from orchestration.daemon.config import EXIT_LEASE_HELD, EXIT_LEASE_LOST, EXIT_OK, EXIT_WEDGED, DaemonConfig
from orchestration.daemon.dispatch import SUCCEEDED, UNCOUNTED_OUTCOMES, BatchRecorder, Dispatcher
from orchestration.daemon.notify import ApprovalNotifier
from orchestration.daemon.outages import Outages
from orchestration.daemon.runner import RunnerPool
from orchestration.daemon.scheduler import ConcurrentScheduler
from orchestration.daemon.state import DaemonState
from orchestration.daemon.wakeup import WakeupListener, wakeup_supported
from orchestration.daemon.watchdog import Watchdog
from orchestration.dburl import redact
from orchestration.exceptions import LeaseHeldElsewhere, LeaseNotHeld
from orchestration.models import Action, ControlFlags, TickStatus
from orchestration.services.claim import action_queue_depth, action_release_unstarted
from orchestration.services.control import control_flags_get
from orchestration.services.lease import lease_acquire_or_renew, lease_release
from orchestration.services.ledger import tick_record
from orchestration.services.results import action_recover_orphans
from orchestration.services.schedules import schedule_fire_due

logger = logging.getLogger("orchestration")

#: How often a tick's ledger row also records the queue depth per open status.
QUEUE_DEPTH_SAMPLE_SECONDS = 30.0

#: A claim takes as many actions as recent attempts suggest can run in this time (at least one).
BATCH_TARGET_SECONDS = 0.2
#: Claimed actions not started within this time go back to the queue (a slow one held the rest up).
BATCH_HOLD_SECONDS = 1.0
#: Weight of the newest attempt in the running average of attempt times that sizes claims.
ATTEMPT_TIME_WEIGHT = 0.2


@dataclass
class TickReport:
    number: int
    status: str
    attempted: int = 0
    succeeded: int = 0
    duration_seconds: float = 0.0
    notes: str = ""
    stop: bool = False  # the daemon must exit after this tick (kill flag)
    wait: bool = False  # the daemon must wait for a revive after this tick (kill flag, wait_when_killed)

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
        self.state = DaemonState()
        self._listener: WakeupListener | None = None
        self._runners = RunnerPool(size=max(1, config.real_concurrency))
        self._recorder = BatchRecorder(state=self.state, actor=config.owner)
        self._outages = Outages(config=config, state=self.state, out=self.out)
        self._dispatcher = Dispatcher(
            config=config, state=self.state, recorder=self._recorder, runners=self._runners, outages=self._outages
        )
        self._scheduler = ConcurrentScheduler(
            config=config, state=self.state, recorder=self._recorder, dispatcher=self._dispatcher, runners=self._runners
        )
        self._watchdog: Watchdog | None = None
        self._depth_sampled_at: float | None = None
        self._standby_holder: str | None = None
        self._attempt_seconds: float | None = None  # running average, sizes the next claim
        self._notifier = ApprovalNotifier(actor=config.owner)

    @property
    def token(self) -> int | None:
        """The token of the lease this daemon holds, if it holds it."""
        return self.state.token

    # --- control from outside ------------------------------------------------------------------

    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop after the running attempt, then release the lease and exit (from any thread, not from
        a signal handler: it sets events whose locks the interrupted thread may hold).

        An adapter that checks its ``Attempt`` stops at its next safe point and its action goes back
        to the queue uncounted; one that does not check is let finish, within its deadline.
        """
        self.state.request_stop(reason)

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        """Tick until done; returns the process exit code."""
        number = 0
        state = self.state
        self._start_watchdog()
        self._start_listener()
        try:
            while not state.stop.is_set():
                state.wake.clear()
                state.notified.clear()  # what is enqueued from now on wakes the next sleep
                state.progress = time.monotonic()
                report = None
                try:
                    self._check_connection()
                    report = self.tick(number)
                except LeaseHeldElsewhere as exc:
                    self._outages.database_back()
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
                    state.token = None  # nothing of ours left to release
                    self._outages.database_back()
                    if not self.config.standby:
                        self.out(f"[AOL] Lost the lease ({exc}); stopped writing. Exiting.")
                        return EXIT_LEASE_LOST
                    self.out(f"[AOL] Lost the lease ({exc}); stopped writing. Back to standby.")
                    state.lease_lost.clear()
                except DatabaseError as exc:
                    # Keep the process: drop the connection, back off, and start a new lease tenure
                    # when the database answers again (its recovery returns what was left RUNNING).
                    self._close_connection()
                    state.token = None
                    self._outages.database_failed(number, exc)
                if report is not None:
                    self.out(report.line())
                    if report.status != TickStatus.KILLED:
                        self._notifier.poke()  # approvers hear about newly parked actions (its own thread)
                    if report.stop:
                        return EXIT_OK
                    if report.wait:
                        self._wait_for_revive()
                        number += 1
                        if self.config.max_ticks is not None and number >= self.config.max_ticks:
                            return EXIT_OK
                        continue  # tick at once: work resumes within a flag poll of the revive
                if state.wedged:
                    self.out(
                        f"[AOL] {self._runners.abandoned_alive()} adapter thread(s) that overran their deadline are "
                        f"still running (limit AOL_MAX_ABANDONED_THREADS={self.config.max_abandoned_threads}). "
                        "Exiting so that a supervisor restarts a clean process."
                    )
                    return EXIT_WEDGED
                number += 1
                if self.config.max_ticks is not None and number >= self.config.max_ticks:
                    return EXIT_OK
                self._sleep(
                    busy=report is not None and report.attempted >= self.config.max_actions_per_tick,
                    pause_seconds=self._outages.pause_seconds(),
                )
            self.out(f"[AOL] Stopping: {state.stop_reason}.")
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
        state = self.state
        seconds = max(self.config.interval_seconds, pause_seconds or 0.0)
        busy = busy or pause_seconds is not None
        state.pause_seconds = seconds
        deadline = time.monotonic() + seconds
        while not (state.notified.is_set() and not busy):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not state.wake.wait(remaining):
                return
            state.wake.clear()
            if not state.notified.is_set() or state.stop.is_set() or state.killed:
                return  # woken for another reason than an enqueue

    def _wait_for_revive(self) -> None:
        """While the kill flag stays set: run nothing, keep the lease (the watchdog renews it and polls
        the flags), and return once it is cleared, a stop is requested or the lease is lost."""
        state = self.state
        self.out(
            "[AOL] Kill flag set: nothing runs; this daemon keeps its lease and waits for a revive "
            '(the console\'s Revive, or: python manage.py aol_control revive --reason "…").'
        )
        while state.killed and not state.stop.is_set() and not state.lease_lost.is_set():
            state.progress = time.monotonic()  # waiting is not a stall: keep the lease renewed
            state.stop.wait(self.config.control_poll_seconds)
        if not state.killed and not state.stop.is_set():
            self.out("[AOL] Revived: resuming work.")

    def _on_notify(self) -> None:
        self.state.notified.set()
        self.state.wake.set()

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
        if self.state.killed and not self.config.wait_when_killed:
            self.out("[AOL] Kill flag set; the standby daemon stops.")
            return True
        return False

    def tick(self, number: int) -> TickReport:
        """One pass of the loop; raises LeaseHeldElsewhere / LeaseNotHeld when it may not work."""
        report = TickReport(number=number, status=TickStatus.SUCCESS)
        clock = time.monotonic()
        self._ensure_lease()
        self._outages.database_back()
        flags = control_flags_get()
        self.state.flags_see(paused=flags.paused, killed=flags.killed)
        if flags.killed:
            report.status = TickStatus.KILLED
            report.notes = f"kill flag set by {flags.updated_by or 'an operator'}; " + self._kill_outcome(report)
        elif flags.paused:
            report.status = TickStatus.PAUSED
            report.notes = f"paused by {flags.updated_by or 'an operator'}"
        else:
            # While holding the lease, queue the due periods of schedules before claiming.
            fired = schedule_fire_due(token=self.token, actor=self.config.owner)
            resumed = self._outages.store_probe()
            if self.state.store_outage is None:
                self._work(report, proof=self._proof(flags), deadline=clock + self.config.max_tick_seconds)
            report.notes = "; ".join(filter(None, [report.notes, fired.note(), resumed]))
            if self.state.store_outage is not None:
                report.status = TickStatus.BLOCKED
                report.notes = "; ".join(filter(None, [self._outages.store_note(), report.notes]))
            if self.state.killed:
                report.status = TickStatus.KILLED
                report.notes = "; ".join(filter(None, [report.notes, self._kill_outcome(report)]))
        report.duration_seconds = time.monotonic() - clock
        recorded = tick_record(
            duration_seconds=report.duration_seconds,
            status=report.status,
            attempted=report.attempted,
            succeeded=report.succeeded,
            owner=self.config.owner,
            token=self.state.held_token(),
            notes=report.notes,
            queue_depth=self._sample_queue_depth(),
        )
        if not recorded:
            raise LeaseNotHeld(f"lease token {self.token} is no longer current; tick not recorded")
        if report.stop:
            self.release_lease()
        return report

    def _kill_outcome(self, report: TickReport) -> str:
        """Mark ``report`` to stop or to wait for a revive, and say which for the tick's notes."""
        if self.config.wait_when_killed:
            report.wait = True
            return "waiting for a revive (lease kept, nothing runs)"
        report.stop = True
        return "lease released"

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
            owner=self.config.owner,
            ttl_seconds=self.config.lease_ttl_seconds,
            token=self.token,
            proof_forced_by=self.config.proof_forced_by(),
        )
        if not result.ok:
            if self.token is None:
                raise LeaseHeldElsewhere(result.reason, holder=result.holder, expires_at=result.expires_at)
            raise LeaseNotHeld(f"lease lost to {result.holder}")
        self.state.lease_lost.clear()
        if result.acquired:
            self.state.token = result.token
            self._recorder.holds_forget()
            self._standby_holder = None
            self.out(f"[AOL] Lease acquired: token {result.token} ({result.reason}).")
            recovered = action_recover_orphans(token=self.state.held_token(), actor=self.config.owner)
            if recovered.retried or recovered.dead or recovered.review or recovered.cancelled:
                total = len(recovered.retried) + len(recovered.dead) + len(recovered.review) + len(recovered.cancelled)
                self.out(
                    f"[AOL] Recovered {total} action(s) left RUNNING by an earlier holder: "
                    f"{len(recovered.retried)} to RETRY, {len(recovered.dead)} to DLQ, "
                    f"{len(recovered.review)} to NEEDS_REVIEW"
                    + (f", {len(recovered.cancelled)} CANCELLED on request." if recovered.cancelled else ".")
                )

    def _proof(self, flags: ControlFlags) -> bool:
        # PROOF wins whenever any source asks for it (the lease row publishes the forcing ones).
        return bool(self.config.proof_forced_by()) or flags.proof_mode

    def _work(self, report: TickReport, *, proof: bool, deadline: float) -> None:
        if not proof and self.config.real_concurrency > 1:
            try:
                report.attempted, report.succeeded, reason = self._scheduler.work(
                    proof=proof, deadline=deadline, interruption=self._interruption
                )
            except BaseException:
                self._recorder.drop()
                raise
            if reason:
                report.notes = f"{reason}; no further action started"
        else:
            self._work_sequentially(report, proof=proof, deadline=deadline)
        if report.attempted and report.succeeded == 0:
            report.status = TickStatus.FAIL
        elif report.succeeded < report.attempted:
            report.status = TickStatus.PARTIAL
        if proof and report.attempted:
            report.notes = "; ".join(filter(None, ["PROOF", report.notes]))

    def _work_sequentially(self, report: TickReport, *, proof: bool, deadline: float) -> None:
        """One attempt at a time, fast first attempts claimed in batches (PROOF; REAL when AOL_REAL_CONCURRENCY=1)."""
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
                    if budget <= 0:
                        break
                    batch = self._recorder.claim_due(limit=self._claim_size(budget), proof=proof)
                    if not batch:
                        break
                    budget -= len(batch)
                    claimed_at = time.monotonic()
                action = batch.pop(0)
                started = time.monotonic()
                outcome = self._dispatcher.dispatch(action, proof=proof, deadline=deadline)
                self.state.progress = time.monotonic()
                self._observe_attempt(self.state.progress - started)
                if outcome not in UNCOUNTED_OUTCOMES:
                    report.attempted += 1
                if outcome == SUCCEEDED:
                    report.succeeded += 1
            self._recorder.flush()
            self._release(batch)
        except BaseException:
            self._recorder.drop()
            raise

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
        released = action_release_unstarted(actions=batch, token=self.state.held_token()) if batch else 0
        batch.clear()
        return released

    def _interruption(self, deadline: float) -> str:
        """Why the tick must not start another action, or '' if it may."""
        state = self.state
        if state.stop.is_set():
            return state.stop_reason
        if state.killed:
            return "kill flag set"
        if state.paused:
            return "paused"
        if state.lease_lost.is_set():
            return "lease renewal refused"
        if state.wedged:
            return "too many abandoned adapter threads"
        if state.store_outage is not None:
            return "artifact store unavailable"
        if time.monotonic() >= deadline:
            return f"tick budget of {self.config.max_tick_seconds:g}s spent"
        return ""

    # --- lease keeping -------------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = Watchdog(config=self.config, state=self.state)
            self._watchdog.start()

    def release_lease(self) -> None:
        if self.state.token is not None:
            lease_release(owner=self.config.owner, token=self.state.token)
            self.state.token = None

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
        self._runners.close()
        self._notifier.join(2.0)
        try:
            self.release_lease()
        except DatabaseError as exc:
            logger.error("could not release the lease on exit (it expires on its own): %s", redact(str(exc)))
        self._close_connection()
