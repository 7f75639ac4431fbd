"""The watchdog: renews the lease every heartbeat and polls the control flags beside the loop."""

import logging
import threading
import time

from django.db import DatabaseError, connection

from orchestration.daemon.config import DaemonConfig
from orchestration.daemon.state import OUTAGE_LOG_SECONDS, DaemonState
from orchestration.dburl import redact
from orchestration.models import Action, ActionStatus, ControlFlags
from orchestration.services.lease import lease_renew

logger = logging.getLogger("orchestration")

#: The stop reason handed to an attempt whose action an operator cancelled.
CANCEL_REQUESTED = "cancel requested by an operator"


class Watchdog(threading.Thread):
    """Renews the lease every heartbeat and polls the control flags while the loop works or sleeps.

    It never dies of an error: a database error is logged (without secrets; once, then at most
    every OUTAGE_LOG_SECONDS) and retried at the next poll; while the loop backs off from a
    database outage the watchdog leaves the database alone too, so the loop's backoff bounds the
    connection attempts. While the database is away the lease simply is not renewed, and fencing
    keeps a successor safe. It stops renewing when the loop itself makes no progress for longer
    than a tick, its pause and one TTL can explain, so that a wedged process lets a standby take over.
    """

    def __init__(self, *, config: DaemonConfig, state: DaemonState):
        super().__init__(name="aol-watchdog", daemon=True)
        self.config = config
        self.state = state
        self._halt = threading.Event()
        self._stuck_logged = False
        self._failing_since: float | None = None  # first of the database errors in a row
        self._error_logged = 0.0

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        config = self.config
        next_renewal = time.monotonic() + config.heartbeat_seconds
        try:
            while not self._halt.wait(min(config.control_poll_seconds, config.heartbeat_seconds)):
                if self.state.db_outage is not None:
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
        state = self.state
        state.flags_see(paused=flags["paused"], killed=flags["killed"])
        token = state.token
        if token is not None and state.attempts:
            # Actions an operator cancelled while claimed by us: the loop does not start those still
            # waiting in a claimed batch, and the running attempts are asked to stop at a safe point.
            state.cancel_requested = cancelled = frozenset(
                Action.objects.filter(status=ActionStatus.RUNNING, lease_token=token, cancel_requested=True)
                .order_by()
                .values_list("pk", flat=True)
            )
            for attempt in state.attempts:
                if attempt.action_id in cancelled and not attempt.stop.is_set():
                    attempt.request_stop(CANCEL_REQUESTED)
        if flags["killed"]:
            # Wake the loop from its sleep so the next tick records the kill at once, and ask the
            # running attempt to stop at a safe point. A tick in progress sees the flags (killed
            # or paused) in the state and starts no further action.
            state.interrupt("kill flag set")

    def _renew(self) -> None:
        state, config = self.state, self.config
        token = state.token
        if token is None:
            return
        stalled = time.monotonic() - state.progress
        # An outage's backoff is a pause, not a stall (it may be longer than the interval).
        pause = max(config.interval_seconds, state.pause_seconds)
        if stalled > config.max_tick_seconds + pause + config.lease_ttl_seconds:
            if not self._stuck_logged:
                self._stuck_logged = True
                logger.error("daemon loop made no progress for %.0fs; not renewing lease token=%s", stalled, token)
            return
        self._stuck_logged = False
        if not lease_renew(owner=config.owner, token=token, ttl_seconds=config.lease_ttl_seconds):
            if state.token == token:  # not a new tenure that began meanwhile
                logger.error("heartbeat could not renew lease token=%s: it expired or was taken over", token)
                state.lease_lost.set()
                state.interrupt("lease lost")
