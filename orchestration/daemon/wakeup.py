"""Wake an idle daemon when actions are enqueued (PostgreSQL LISTEN/NOTIFY).

A statement trigger on aol_actions (migration 0010) sends ``NOTIFY aol_actions`` whenever rows
are inserted, by whatever writer. ``WakeupListener`` is a thread with its own connection that
LISTENs on that channel and calls ``on_notify`` for each batch of notifications, so the daemon
ends its sleep between ticks at once instead of waiting out ``AOL_TICK_INTERVAL_SECONDS``.

Notifications are only a hint: one that is missed (the listener was reconnecting, the daemon was
busy) costs at most one tick interval, because the daemon still polls the queue every interval.
SQLite has no notifications; there the daemon only polls.
"""

import logging
import os
import select
import threading
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from orchestration.dburl import redact

logger = logging.getLogger("orchestration")

CHANNEL = "aol_actions"
#: The longest one wait for the socket lasts (``stop()`` wakes it at once through a pipe).
POLL_SECONDS = 5.0
#: Pause before reconnecting after the connection broke (the database restarted, say).
RECONNECT_SECONDS = 2.0


def wakeup_supported(alias: str = "default") -> bool:
    return connections[alias].vendor == "postgresql"


class WakeupListener(threading.Thread):
    """LISTENs on ``CHANNEL`` on a connection of its own and calls ``on_notify()`` when woken."""

    def __init__(self, on_notify: Callable[[], None], *, alias: str = "default"):
        super().__init__(name="aol-wakeup", daemon=True)
        self.on_notify = on_notify
        self.alias = alias
        self._halt = threading.Event()
        # stop() writes to this pipe, which the select() below watches beside the connection: the
        # thread ends at once instead of after its current wait (the daemon's exit must take < 1 s).
        self._stop_read, self._stop_write = os.pipe()
        self.listening = threading.Event()  # set while LISTEN is in effect (for tests and logs)

    def stop(self) -> None:
        if not self._halt.is_set():
            self._halt.set()
            os.write(self._stop_write, b"x")
        self.join(timeout=5)
        if not self.is_alive():
            os.close(self._stop_read)
            os.close(self._stop_write)

    def run(self) -> None:
        while not self._halt.is_set():
            wrapper = connections.create_connection(self.alias)
            try:
                self._listen(wrapper)
            except Exception as exc:  # Django's DatabaseError, or the driver's own on the raw socket
                if not self._halt.is_set():
                    logger.warning(
                        "wake-up listener lost its connection (will reconnect; polling meanwhile): %s",
                        redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__),
                    )
            finally:
                self.listening.clear()
                try:
                    wrapper.close()
                except DatabaseError:
                    pass
            self._halt.wait(RECONNECT_SECONDS)

    def _listen(self, wrapper: BaseDatabaseWrapper) -> None:
        wrapper.ensure_connection()
        wrapper.set_autocommit(True)
        with wrapper.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        raw = wrapper.connection
        self.listening.set()
        while not self._halt.is_set():
            readable, _, _ = select.select([raw, self._stop_read], [], [], POLL_SECONDS)
            if raw in readable and _drain(raw):
                self.on_notify()


def _drain(raw: Any) -> bool:
    """Read what arrived on ``raw`` (psycopg2 or psycopg 3); True if it held a notification.

    Raises the driver's own error when the connection broke.
    """
    if hasattr(raw, "pgconn"):  # psycopg 3: read the low-level connection directly
        raw.pgconn.consume_input()
        found = False
        while raw.pgconn.notifies() is not None:
            found = True
        return found
    raw.poll()  # psycopg2
    found = bool(raw.notifies)
    raw.notifies.clear()
    return found
