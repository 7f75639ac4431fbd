"""The lease holder's approval notifier: announces actions that started waiting for approval, off the tick's thread.

After each tick the loop calls ``poke()``: when an AWAITING_APPROVAL action has not been announced
and no pass is running, one pass of ``approval_notify_pending`` starts on a thread of its own. A
mail server or webhook that is slow (or down) therefore never delays a tick, a pause or a kill,
and whatever it raises is logged, not propagated: notifications are a courtesy, the queue is not.
"""

import logging
import threading

from django.db import DatabaseError, connection

from orchestration.models import Action
from orchestration.services.approval_notify import approval_notify_pending

logger = logging.getLogger("orchestration")


class ApprovalNotifier:
    def __init__(self, *, actor: str) -> None:
        self.actor = actor
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """Start a notification pass if one is due and none is running (never raises)."""
        if self._thread is not None and self._thread.is_alive():
            return
        try:
            due = Action.objects.awaiting_approval().filter(approval_notified_at__isnull=True).exists()
        except DatabaseError:
            logger.warning("approval notifier: could not look for unannounced actions; next tick tries again")
            return
        if due:
            self._thread = threading.Thread(target=self._run, name="aol-approval-notifier", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            approval_notify_pending(actor=self.actor)
        except Exception:
            logger.exception("approval notifier pass failed; the actions stay in the approvals list")
        finally:
            try:
                connection.close()  # this thread's own connection
            except DatabaseError:
                pass

    def join(self, timeout_seconds: float) -> None:
        """Give a running pass a moment to finish on shutdown (it is a daemon thread: it never holds the exit)."""
        if self._thread is not None:
            self._thread.join(timeout_seconds)
