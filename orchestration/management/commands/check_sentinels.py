"""``manage.py check_sentinels``: may this release go live? (see orchestration/sentinels.py)."""

import json
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestration.management.commands._common import positive_float
from orchestration.sentinels import FAIL, PASS, SKIP, WARN, SentinelResult, sentinels_run, sentinels_summary

EXIT_FAILED = 1


class Command(BaseCommand):
    help = (
        "Run the deployment sentinels (Python, imports, DATABASE_URL, database connectivity, AOL tables, "
        "migrations, LLM, status view, artifacts directory, system checks, daemon heartbeat) and print "
        "pass/warn/fail with advice. Exit 0 when nothing failed, 1 when something did (or warned, with "
        "--fail-on-warn)."
    )
    # The sentinels run the system checks themselves: a broken configuration is what they report,
    # so it must not stop the command before it starts.
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
        parser.add_argument("--fail-on-warn", action="store_true", help="Exit 1 on warnings too.")
        parser.add_argument(
            "--require-daemon", action="store_true", help="Fail unless a daemon holds the lease with a fresh heartbeat."
        )
        parser.add_argument(
            "--timeout",
            type=positive_float,
            default=2.0,
            help="Seconds to wait for the database to answer (default 2).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        results = sentinels_run(require_daemon=options["require_daemon"], timeout_seconds=options["timeout"])
        counts = sentinels_summary(results)
        elapsed = time.monotonic() - started
        failing = [r for r in results if r.status == FAIL or (options["fail_on_warn"] and r.status == WARN)]
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "ok": not failing,
                        "summary": counts,
                        "seconds": round(elapsed, 3),
                        "checks": [r.as_dict() for r in results],
                    },
                    indent=2,
                )
            )
        else:
            self._table(results)
            self.stdout.write(
                f"\n{counts[PASS]} passed, {counts[WARN]} warned, {counts[FAIL]} failed, {counts[SKIP]} skipped "
                f"in {elapsed:.2f}s."
            )
        if failing:
            what = "warned or failed" if options["fail_on_warn"] else "failed"
            raise CommandError(
                f"{len(failing)} sentinel(s) {what}: {', '.join(r.name for r in failing)}.", returncode=EXIT_FAILED
            )

    def _table(self, results: list[SentinelResult]) -> None:
        styles: dict[str, Callable[[str], str]] = {
            PASS: self.style.SUCCESS,
            WARN: self.style.WARNING,
            FAIL: self.style.ERROR,
            SKIP: str,
        }
        name_width = max(len(r.name) for r in results)
        self.stdout.write(f"{'ID':<19} {'CHECK':<{name_width}} STATUS  DETAIL")
        for r in results:
            status = styles[r.status](f"{r.status.upper():<6}")
            self.stdout.write(f"{r.id:<19} {r.name:<{name_width}} {status}  {r.detail}")
            if r.advice and r.status in (WARN, FAIL):
                self.stdout.write(f"{'':<19} {'':<{name_width}}         → {r.advice}")
