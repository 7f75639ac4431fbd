"""Environment failures that pause claiming: the artifact store or the database is unusable.

Neither is the action's fault. A store failure returns the action to the queue uncounted; each
tick then records a BLOCKED row saying why and probes the directory until it passes. A database
error pauses the loop, and the outage ends as one FAIL row in the ledger. Both pauses back off
(``outage_backoff_seconds``, state.py). ``Outages`` runs on the loop's thread; the watchdog only
reads ``state.db_outage``.
"""

import logging
import time
from collections.abc import Callable

from django.db import DatabaseError

from orchestration.adapters.store import artifact_store_probe
from orchestration.daemon.config import DaemonConfig
from orchestration.daemon.state import (
    OUTAGE_BACKOFF_MAX_SECONDS,
    OUTAGE_LOG_SECONDS,
    DaemonState,
    Outage,
    outage_backoff_seconds,
)
from orchestration.dburl import redact
from orchestration.exceptions import ArtifactStoreUnavailable
from orchestration.models import TickStatus
from orchestration.services.ledger import tick_record

logger = logging.getLogger("orchestration")


class Outages:
    """Starts, probes, logs and ends the outages in ``DaemonState`` (on the loop's thread)."""

    def __init__(self, *, config: DaemonConfig, state: DaemonState, out: Callable[[str], None]):
        self.config = config
        self.state = state
        self.out = out

    def store_failed(self, exc: ArtifactStoreUnavailable) -> None:
        """An attempt could not write its artifact: count it, and start the outage if none is running."""
        state = self.state
        state.store_failures += 1
        if state.store_outage is None:
            state.store_outage = Outage(detail=str(exc), retry_in_seconds=outage_backoff_seconds(state.store_failures))
            logger.error("artifact store unavailable, claiming paused (attempts not counted): %s", exc)
            self.out(
                f"[AOL] Artifact store unavailable: claiming paused, attempts not counted; checking again "
                f"with a backoff of up to {OUTAGE_BACKOFF_MAX_SECONDS:g}s. {exc}"
            )

    def store_probe(self) -> str:
        """While the artifact store is out, probe it; when it passes, end the outage and say so."""
        outage = self.state.store_outage
        if outage is None:
            return ""
        problem = artifact_store_probe()
        if problem:
            self.state.store_failures += 1
            outage.failures += 1
            outage.detail = str(problem)
            outage.retry_in_seconds = outage_backoff_seconds(self.state.store_failures)
            return ""
        self.state.store_outage = None
        message = f"artifact store available again after {outage.seconds():.0f}s; claiming resumed"
        logger.warning("%s (%s failed checks)", message, outage.failures)
        self.out(f"[AOL] {message[0].upper()}{message[1:]}.")
        return message

    def store_note(self) -> str:
        """What a tick's ledger row says while the artifact store is out."""
        outage = self.state.store_outage
        if outage is None:
            return ""
        return (
            f"claiming paused: artifact store unavailable for {outage.seconds():.0f}s "
            f"({outage.failures} failed check(s); next in {outage.retry_in_seconds:g}s): {outage.detail}"
        )

    def database_failed(self, number: int, exc: DatabaseError) -> None:
        """Start or extend a database outage and back off.

        Logged when the outage starts and then at most every OUTAGE_LOG_SECONDS, not per retry.
        """
        name = type(exc).__name__
        detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        outage = self.state.db_outage
        if outage is None:
            outage = self.state.db_outage = Outage(detail=f"{name}: {detail}")
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

    def database_back(self) -> None:
        """The database answered after an outage: say how long it lasted, once, also in the ledger."""
        outage = self.state.db_outage
        if outage is None:
            return
        notes = (
            f"database unavailable for {outage.seconds():.1f}s ({outage.failures} failed attempt(s), "
            f"backing off up to {OUTAGE_BACKOFF_MAX_SECONDS:g}s; last error {outage.detail}); resumed"
        )
        if self.state.token is not None:
            tick_record(
                duration_seconds=outage.seconds(),
                status=TickStatus.FAIL,
                attempted=0,
                succeeded=0,
                owner=self.config.owner,
                token=self.state.token,
                notes=notes,
            )
        self.state.db_outage = None
        logger.warning("%s", notes)
        self.out(f"[AOL] Database available again: {notes}.")

    def pause_seconds(self) -> float | None:
        """How long to wait before the next tick while an outage lasts; None when there is none."""
        pauses = [
            outage.retry_in_seconds for outage in (self.state.db_outage, self.state.store_outage) if outage is not None
        ]
        return max(pauses) if pauses else None
