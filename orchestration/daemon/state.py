"""What the loop, the dispatcher and the watchdog share, in one object (``DaemonState``).

Three threads meet here: the loop's (``Daemon.run``, which also runs the dispatcher), the watchdog's
and, for ``request_stop``, the signal relay's. Who writes what:

- ``token``: the loop (acquire, loss, release). The watchdog reads it to renew the lease and the
  signal relay to release it; both read it once into a local, so a change meanwhile is harmless.
- ``paused`` / ``killed``: the loop at each tick and the watchdog at each poll, both from the
  control-flags row. The only fields two threads write: ``flags_see`` takes a lock so the pair
  is always from one reading.
- ``lease_lost``: set by the watchdog when a renewal is refused, cleared by the loop.
- ``cancel_requested``: the watchdog, as one assignment of a new frozenset; the dispatcher reads it.
- ``attempts``: the dispatcher (the attempts running now: one, or up to AOL_REAL_CONCURRENCY), as one
  assignment of a new tuple; the watchdog reads it to ask them to stop.
- ``progress``, ``pause_seconds``, ``db_outage``: the loop; the watchdog reads them to judge a
  stall and to leave the database alone during an outage.
- ``stop`` / ``stop_reason``, ``wake``, ``notified``: events any thread may set.
- ``store_outage``, ``store_failures``, ``wedged``: the loop thread only (loop and dispatcher).

Apart from the flags pair every field has one writer, and each write or read of one attribute is
atomic under the GIL; the events carry their own locks. No thread writes another object's private
attributes: they call the methods here.
"""

import threading
import time
from dataclasses import dataclass, field

from orchestration.adapters import Attempt
from orchestration.exceptions import LeaseNotHeld

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


class DaemonState:
    """The state one daemon's threads share; see the module docstring for who writes which field."""

    def __init__(self) -> None:
        self.token: int | None = None
        self.stop = threading.Event()  # set by request_stop()
        self.stop_reason = ""
        self.wake = threading.Event()  # ends the sleep between ticks early
        self.notified = threading.Event()  # actions were enqueued since the last claim (PostgreSQL)
        self._flags_lock = threading.Lock()
        self.paused = False
        self.killed = False
        self.lease_lost = threading.Event()
        self.cancel_requested: frozenset[int] = frozenset()  # RUNNING ids an operator cancelled
        self.attempts: tuple[Attempt, ...] = ()  # in flight now; replaced whole, never changed in place
        self.progress = time.monotonic()  # the loop's own heartbeat
        self.pause_seconds = 0.0  # the wait between ticks in progress
        self.db_outage: Outage | None = None
        self.store_outage: Outage | None = None
        self.store_failures = 0  # failed artifact writes and probes since the last success
        self.wedged = False

    def held_token(self) -> int:
        """The token of the lease held now; LeaseNotHeld when there is none (nothing may be written)."""
        token = self.token
        if token is None:
            raise LeaseNotHeld("this daemon holds no lease; nothing is written")
        return token

    def flags_see(self, *, paused: bool, killed: bool) -> None:
        """Remember the control flags as last read from the database."""
        with self._flags_lock:
            self.paused, self.killed = paused, killed

    def request_stop(self, reason: str) -> None:
        """Stop the loop after the running attempt; the first reason given is the one reported."""
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()
        self.interrupt(reason)

    def attempt_started(self, attempt: Attempt) -> None:
        """The loop thread only: ``attempt`` is in flight (a stop request reaches it from now on)."""
        self.attempts = (*self.attempts, attempt)

    def attempt_ended(self, attempt: Attempt) -> None:
        """The loop thread only: ``attempt`` is no longer in flight."""
        self.attempts = tuple(a for a in self.attempts if a is not attempt)

    def interrupt(self, reason: str) -> None:
        """Ask the running attempts to stop at their next safe point, and end the loop's sleep."""
        for attempt in self.attempts:
            attempt.request_stop(reason)
        self.wake.set()

    def halt_reason(self) -> str:
        """Why an attempt about to start must stop at once (a kill, a stop or a lost lease), or ''.

        A pause lets it run: it only keeps further actions from starting.
        """
        if self.stop.is_set() or self.killed or self.lease_lost.is_set():
            return self.stop_reason or ("kill flag set" if self.killed else "lease lost")
        return ""
