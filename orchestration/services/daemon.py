"""The AOL daemon: a tick loop run by ``manage.py run_aol_daemon``.

One tick: acquire or renew the lease → read the control flags (killed: release and stop;
paused: record the tick and claim nothing) → recover actions orphaned by an earlier holder →
claim due actions → run each through its adapter, stopping early when the tick's time budget is
spent, a stop is requested or the operators pause or kill → record the tick in the ledger.

Beside the loop, a watchdog thread renews the lease every heartbeat (so a long action does not
lose it) and polls the control flags, so kill and pause take effect between two actions rather
than at the next tick.
"""

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from orchestration.adapters import adapter_get
from orchestration.conf import aol
from orchestration.exceptions import InvalidAction, LeaseHeldElsewhere, LeaseNotHeld
from orchestration.models import Action, ActionStatus, ControlFlags, TickStatus
from orchestration.services.control import control_flags_get
from orchestration.services.lease import lease_acquire_or_renew, lease_release, lease_renew
from orchestration.services.ledger import tick_record
from orchestration.services.queue import (
    action_claim_due,
    action_mark_failure,
    action_mark_success,
    action_queue_depth,
    action_recover_orphans,
    action_release_unstarted,
)
from orchestration.services.schedules import schedule_fire_due

logger = logging.getLogger("orchestration")

# Exit codes of run_aol_daemon (documented in the README).
EXIT_OK = 0  # ran its ticks, was killed by the flag, or stopped by SIGINT/SIGTERM
EXIT_ERROR = 1  # could not start: database unreachable or migrations unapplied
EXIT_USAGE = 2  # invalid arguments
EXIT_LEASE_HELD = 3  # another live daemon holds the lease; nothing was touched
EXIT_LEASE_LOST = 4  # the lease was taken over while running; this daemon stopped writing


#: How often a tick's ledger row also records the queue depth per open status.
QUEUE_DEPTH_SAMPLE_SECONDS = 30.0


def default_owner() -> str:
    """``hostname:pid``, unique among live daemons."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class DaemonConfig:
    owner: str
    force_proof: bool = False
    max_ticks: int | None = None
    interval_seconds: float = 5.0
    max_actions_per_tick: int = 3
    max_tick_seconds: float = 20.0
    heartbeat_seconds: float = 5.0
    lease_ttl_seconds: float = 30.0
    control_poll_seconds: float = 0.5

    @classmethod
    def from_settings(cls, **overrides) -> "DaemonConfig":
        """The configuration from AOL_* settings, with command-line ``overrides`` (None = unset)."""
        values = {
            "owner": default_owner(),
            "force_proof": False,
            "max_ticks": aol.max_ticks,
            "interval_seconds": aol.tick_interval_seconds,
            "max_actions_per_tick": aol.max_actions_per_tick,
            "max_tick_seconds": aol.max_tick_seconds,
            "heartbeat_seconds": aol.heartbeat_seconds,
            "lease_ttl_seconds": aol.lease_ttl_seconds,
            "control_poll_seconds": aol.control_poll_seconds,
        }
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass
class TickReport:
    number: int
    status: str
    attempted: int = 0
    succeeded: int = 0
    started_at: datetime = field(default_factory=timezone.now)
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
        self._flags_seen = {"paused": False, "killed": False}  # written by the watchdog
        self._watchdog: _Watchdog | None = None
        self._running = False  # run() owns the watchdog; a bare tick() starts no thread
        self._depth_sampled_at: float | None = None

    # --- control from outside ------------------------------------------------------------------

    def request_stop(self, reason: str = "stop requested") -> None:
        """Finish the current action, then release the lease and exit (safe from a signal handler)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()
        self._wake.set()

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        """Tick until done; returns the process exit code."""
        number = 0
        self._running = True
        try:
            while not self._stop.is_set():
                close_old_connections()
                self._wake.clear()
                try:
                    report = self.tick(number)
                except LeaseHeldElsewhere as exc:
                    self.out(
                        f"[AOL] Lease held by {exc.holder} until {exc.expires_at:%Y-%m-%d %H:%M:%S} UTC: "
                        "another daemon is running. Exiting without touching anything."
                    )
                    return EXIT_LEASE_HELD
                except LeaseNotHeld as exc:
                    self.out(f"[AOL] Lost the lease ({exc}); stopped writing. Exiting.")
                    self.token = None  # nothing of ours left to release
                    return EXIT_LEASE_LOST
                except DatabaseError as exc:
                    # Keep the process: log, drop the connection and start a new lease tenure next
                    # tick, whose recovery returns whatever this tick left RUNNING to the queue.
                    logger.error("tick=%s database error, will reconnect: %s", number, exc)
                    self.out(f"[AOL Tick {number}] FAIL | database error ({type(exc).__name__}); retrying next tick")
                    connection.close()
                    self.token = None
                    report = None
                if report is not None:
                    self.out(report.line())
                    if report.stop:
                        return EXIT_OK
                number += 1
                if self.config.max_ticks is not None and number >= self.config.max_ticks:
                    return EXIT_OK
                self._wake.wait(self.config.interval_seconds)
            self.out(f"[AOL] Stopping: {self._stop_reason}.")
            return EXIT_OK
        finally:
            self._shutdown()

    def tick(self, number: int) -> TickReport:
        """One pass of the loop; raises LeaseHeldElsewhere / LeaseNotHeld when it may not work."""
        report = TickReport(number=number, status=TickStatus.SUCCESS)
        clock = time.monotonic()
        self._ensure_lease()
        flags = control_flags_get()
        self._flags_seen.update(paused=flags.paused, killed=flags.killed)
        if flags.killed:
            report.status, report.stop = TickStatus.KILLED, True
            report.notes = f"kill flag set by {flags.updated_by or 'an operator'}; lease released"
        elif flags.paused:
            report.status = TickStatus.PAUSED
            report.notes = f"paused by {flags.updated_by or 'an operator'}"
        else:
            # Schedules (issue 7): while holding the lease, queue the due periods before claiming.
            fired = schedule_fire_due(token=self.token, actor=self.config.owner)
            self._work(report, proof=self._proof(flags), deadline=clock + self.config.max_tick_seconds)
            report.notes = "; ".join(filter(None, [report.notes, fired.note()]))
        report.duration_seconds = time.monotonic() - clock
        recorded = tick_record(
            started_at=report.started_at,
            finished_at=timezone.now(),
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
        if result.acquired:
            self.token = result.token
            self._start_watchdog()  # before any work, so even the first action is covered
            recovered = action_recover_orphans(token=self.token, actor=self.config.owner)
            if recovered.retried or recovered.dead:
                self.out(
                    f"[AOL] Recovered {len(recovered.retried) + len(recovered.dead)} action(s) left RUNNING by an "
                    f"earlier holder: {len(recovered.retried)} to RETRY, {len(recovered.dead)} to DLQ."
                )

    def _proof(self, flags: ControlFlags) -> bool:
        # PROOF wins whenever any source asks for it.
        return self.config.force_proof or bool(aol.proof_mode) or flags.proof_mode

    def _work(self, report: TickReport, *, proof: bool, deadline: float) -> None:
        claimed = action_claim_due(owner=self.config.owner, token=self.token, limit=self.config.max_actions_per_tick)
        for index, action in enumerate(claimed):
            reason = self._interruption(deadline)
            if reason:
                released = action_release_unstarted(actions=claimed[index:], token=self.token)
                report.notes = f"{reason}; {released} claimed action(s) returned to the queue"
                break
            report.attempted += 1
            if self._dispatch(action, proof=proof):
                report.succeeded += 1
        if report.attempted and report.succeeded == 0:
            report.status = TickStatus.FAIL
        elif report.succeeded < report.attempted:
            report.status = TickStatus.PARTIAL
        if proof and claimed:
            report.notes = "; ".join(filter(None, ["PROOF", report.notes]))

    def _interruption(self, deadline: float) -> str:
        """Why the tick must not start another action, or '' if it may."""
        if self._stop.is_set():
            return self._stop_reason
        if self._flags_seen["killed"]:
            return "kill flag set"
        if self._flags_seen["paused"]:
            return "paused"
        if time.monotonic() >= deadline:
            return f"tick budget of {self.config.max_tick_seconds:g}s spent"
        return ""

    def _dispatch(self, action: Action, *, proof: bool) -> bool:
        """Run one action; any error is recorded against the action, never raised (but fencing)."""
        owner = self.config.owner
        try:
            adapter = adapter_get(action.action_type)
            adapter.validate(action.payload)
            result = adapter.execute(action, proof=proof)
        except Exception as exc:  # one action's failure must not stop the daemon
            permanent = isinstance(exc, InvalidAction) or getattr(exc, "permanent", False)
            if not permanent and not hasattr(exc, "permanent"):
                logger.exception("action id=%s type=%s raised unexpectedly", action.pk, action.action_type)
            status = action_mark_failure(
                action=action, token=self.token, actor=owner, error=f"{type(exc).__name__}: {exc}", permanent=permanent
            )
            logger.info("action id=%s type=%s status=%s error=%s", action.pk, action.action_type, status, exc)
            return False
        action_mark_success(
            action=action,
            token=self.token,
            actor=owner,
            message=result.message,
            artifact_ref=result.artifact_ref,
            artifact_sha256=result.artifact_sha256,
        )
        logger.info(
            "action id=%s type=%s status=%s artifact=%s",
            action.pk,
            action.action_type,
            ActionStatus.SUCCESS,
            result.artifact_ref or "-",
        )
        return True

    # --- lease keeping -------------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        if self._running and self._watchdog is None:
            self._watchdog = _Watchdog(self)
            self._watchdog.start()

    def _release_lease(self) -> None:
        if self.token is not None:
            lease_release(owner=self.config.owner, token=self.token)
            self.token = None

    def _shutdown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        try:
            self._release_lease()
        except DatabaseError as exc:
            logger.error("could not release the lease on exit (it expires on its own): %s", exc)
        connection.close()


class _Watchdog(threading.Thread):
    """Renews the lease every heartbeat and polls the control flags while the loop works or sleeps."""

    def __init__(self, daemon: Daemon):
        super().__init__(name="aol-watchdog", daemon=True)
        self.owner = daemon
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        config = self.owner.config
        next_renewal = time.monotonic() + config.heartbeat_seconds
        try:
            while not self._halt.wait(min(config.control_poll_seconds, config.heartbeat_seconds)):
                try:
                    self._poll_flags()
                    if time.monotonic() >= next_renewal:
                        next_renewal = time.monotonic() + config.heartbeat_seconds
                        self._renew()
                except DatabaseError as exc:
                    logger.warning("watchdog database error (will retry): %s", exc)
                    connection.close()
        finally:
            connection.close()  # this thread's own connection

    def _poll_flags(self) -> None:
        flags = ControlFlags.objects.filter(pk=ControlFlags.SINGLETON_ID).values("paused", "killed").first()
        if flags is None:
            return
        self.owner._flags_seen.update(flags)
        if flags["killed"]:
            # Wake the loop from its sleep so the next tick records the kill at once. A tick in
            # progress sees _flags_seen (killed or paused) and starts no further action.
            self.owner._wake.set()

    def _renew(self) -> None:
        token = self.owner.token
        if token is None:
            return
        if not lease_renew(owner=self.owner.config.owner, token=token, ttl_seconds=self.owner.config.lease_ttl_seconds):
            logger.error("heartbeat could not renew lease token=%s: it expired or was taken over", token)
