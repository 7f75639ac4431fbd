"""``manage.py run_aol_daemon``: run the AOL tick loop (see orchestration/daemon/)."""

import contextlib
import gc
import os
import queue
import signal
import threading
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

from orchestration.daemon import (
    EXIT_ERROR,
    EXIT_LEASE_HELD,
    EXIT_LEASE_LOST,
    EXIT_OK,
    EXIT_WEDGED,
    Daemon,
    DaemonConfig,
)
from orchestration.dburl import database_url_masked, redact
from orchestration.management.commands._common import positive_float, positive_int
from orchestration.models import ControlFlags
from orchestration.services.control import control_flags_get
from orchestration.services.lease import lease_release_within

#: The signals that stop the daemon: the first one gracefully, a second one at once.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: A second stop signal exits with 128 + its number (129 SIGHUP, 130 SIGINT, 143 SIGTERM), as a shell
#: reports a process that signal killed.
EXIT_SIGNAL_BASE = 128
#: How long a second stop signal waits for the lease to be released before exiting anyway.
SECOND_SIGNAL_RELEASE_SECONDS = 1.0

EXIT_MESSAGES = {
    EXIT_LEASE_HELD: "another daemon holds the lease",
    EXIT_LEASE_LOST: "the lease was taken over; this daemon stopped",
    EXIT_WEDGED: "adapter threads that overran their deadline piled up; restart the daemon",
}


class Command(BaseCommand):
    help = (
        "Run the AOL daemon: claim due actions under the database lease and run them through their "
        "adapters, tick after tick. SIGINT, SIGTERM or SIGHUP stops it gracefully; a second one exits at "
        "once (128 + the signal number) after releasing the lease. Exit codes: 0 done/killed/stopped, "
        "1 cannot start (database unreachable or unmigrated), 2 bad arguments, 3 lease held by another "
        "daemon, 4 lease lost, 5 overrunning adapter threads piled up (restart it), 129/130/143 a second "
        "SIGHUP/SIGINT/SIGTERM. With --standby, a held lease is waited for and a lost one is waited for "
        "again, instead of exits 3 and 4. With --wait-when-killed, the kill flag stops the work but not the "
        "process: it waits, keeping its lease, and resumes on revive (how `make run` starts it)."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        """As a process (not ``call_command``): once the daemon has stopped (lease released, output
        flushed), spare the exit the interpreter's final garbage collection over every loaded module
        (a platform SDK such as atproto makes that take a fifth of a second): kill and SIGTERM promise
        an exit within 1 s. ``gc.freeze`` moves what is alive to a generation the collector skips."""
        try:
            super().run_from_argv(argv)
        finally:
            gc.freeze()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--proof", action="store_true", help="Force PROOF mode (write artifacts, act on nothing).")
        parser.add_argument(
            "--standby",
            action="store_true",
            help="When another daemon holds the lease, wait and take over when it expires or is released "
            "(also when the database is not reachable yet at start).",
        )
        parser.add_argument(
            "--wait-when-killed",
            action="store_true",
            help="On the kill flag, stop the work but keep the process and its lease, and resume on revive, "
            "instead of exiting (for supervisors that stop every process when one exits, e.g. honcho).",
        )
        parser.add_argument(
            "--ticks", type=positive_int, help="Exit after N ticks (default: AOL_MAX_TICKS, else run on)."
        )
        parser.add_argument(
            "--interval", type=positive_float, help="Seconds between ticks (AOL_TICK_INTERVAL_SECONDS)."
        )
        parser.add_argument(
            "--max-actions", type=positive_int, help="Actions claimed per tick (AOL_MAX_ACTIONS_PER_TICK)."
        )
        parser.add_argument(
            "--max-tick-seconds", type=positive_float, help="Time budget of one tick (AOL_MAX_TICK_SECONDS)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        url = database_url_masked()
        config = DaemonConfig.from_settings(
            force_proof=options["proof"] or None,
            max_ticks=options["ticks"],
            interval_seconds=options["interval"],
            max_actions_per_tick=options["max_actions"],
            max_tick_seconds=options["max_tick_seconds"],
            standby=options["standby"] or None,
            wait_when_killed=options["wait_when_killed"] or None,
        )
        flags = self._wait_for_database(url, config)
        forced_by = config.proof_forced_by()
        self._say(f"[AOL] Database initialized: {url}")
        self._say(f"[AOL] PROOF mode: {bool(forced_by) or flags.proof_mode}")
        if forced_by:
            self._say(f"[AOL] PROOF is forced by {forced_by}: switching the flag to REAL does not change this daemon.")
        self._say(f"[AOL] Max ticks: {config.max_ticks if config.max_ticks is not None else 'unlimited'}")
        self._say(
            f"[AOL] Daemon {config.owner}: interval {config.interval_seconds:g}s, "
            f"{config.max_actions_per_tick} action(s) per tick, lease TTL {config.lease_ttl_seconds:g}s"
            + (", standby" if config.standby else "")
            + (", waits when killed" if config.wait_when_killed else "")
        )
        daemon = Daemon(config, out=self._say)
        previous = self._install_signal_handlers(daemon)
        try:
            code = daemon.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if code != EXIT_OK:
            raise CommandError(EXIT_MESSAGES.get(code, "daemon failed"), returncode=code)

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def _wait_for_database(self, url: str, config: DaemonConfig) -> ControlFlags:
        """Check the database and return the control flags; a standby waits for an unreachable one."""
        while True:
            try:
                self._check_database(url)
                return control_flags_get()
            except DatabaseError as exc:
                detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                message = (
                    f"Cannot reach the database at {url}: {detail}. Check DATABASE_URL and that the server is running."
                )
                if not config.standby:
                    raise CommandError(message, returncode=EXIT_ERROR) from None
                self._say(f"[AOL] {message} Standby: retrying in {config.interval_seconds:g}s.")
                connection.close()
                time.sleep(config.interval_seconds)

    def _check_database(self, url: str) -> None:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5]) + (" …" if len(plan) > 5 else "")
            raise CommandError(
                f"{len(plan)} migration(s) are not applied to {url} ({names}). Run: python manage.py migrate",
                returncode=EXIT_ERROR,
            )

    def _install_signal_handlers(self, daemon: Daemon) -> dict:
        """First SIGINT/SIGTERM/SIGHUP: stop gracefully (``Daemon.request_stop``), exit 0. Second: release
        the lease (waiting at most SECOND_SIGNAL_RELEASE_SECONDS) and exit at once, 128 + signal."""
        # The handler only hands the signal over: request_stop() sets threading.Events, whose locks
        # the interrupted main thread may be holding (it waits on such events), which would deadlock;
        # and the main thread's database connection may be in the middle of a statement. SimpleQueue.put
        # is safe in a signal handler; a small thread does the rest, and os._exit from that thread does
        # not wait for the main thread.
        received: queue.SimpleQueue[int] = queue.SimpleQueue()

        def relay() -> None:
            name = signal.Signals(received.get()).name
            daemon.request_stop(f"received {name}")
            # Our stdout may be a pipe whose reader died (the supervisor that sent the signal); the
            # second signal must be handled all the same.
            with contextlib.suppress(OSError):
                self._say(
                    f"[AOL] Received {name}: stopping once the running action stops at a safe point or "
                    "finishes (a second signal exits at once)."
                )
            self._exit_at_once(daemon, received.get())

        threading.Thread(target=relay, name="aol-signals", daemon=True).start()

        def handle(signum: int, frame: FrameType | None) -> None:
            received.put(signum)

        previous = {}
        for signum in STOP_SIGNALS:
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handle)
        return previous

    def _exit_at_once(self, daemon: Daemon, signum: int) -> None:
        """End the process now, but hand the lease over first so a standby need not wait for its TTL.

        What the running attempt leaves RUNNING is recovered by the next holder, as after a crash.
        """
        token = daemon.token
        try:
            if token is None:
                outcome = "no lease held"
            elif lease_release_within(
                owner=daemon.config.owner, token=token, timeout_seconds=SECOND_SIGNAL_RELEASE_SECONDS
            ):
                outcome = "lease released"
            else:
                outcome = f"the lease was not released within {SECOND_SIGNAL_RELEASE_SECONDS:g}s; it expires at its TTL"
            name = signal.Signals(signum).name
            self._say(f"[AOL] Received {name}, a second stop signal: exiting at once; {outcome}.")
        finally:  # whatever failed above (a closed stdout), the process ends now
            os._exit(EXIT_SIGNAL_BASE + signum)
