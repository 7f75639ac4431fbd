"""``manage.py aol_prune``: delete old SUCCESS/FAILED actions, logs, ticks, PROOF artifacts (both stores) and leftover
temporary files, in short batches."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from orchestration.dburl import redact
from orchestration.management.commands._common import positive_float, positive_int
from orchestration.services.retention import retention_prune

EXIT_ERROR = 1
EXIT_USAGE = 2


class Command(BaseCommand):
    help = (
        "Delete SUCCESS and FAILED actions, execution logs, tick rows and PROOF artifacts (files, and aol_artifacts "
        "rows of the database store) older than their "
        "retention (AOL_RETENTION_*_DAYS, or the options below), in short batches. Actions still open "
        "(waiting, running, retrying, in the DLQ), and their logs and artifacts, are never touched. "
        "Temporary files (.tmp-*) a crash left in the artifacts directory go once they are an hour old. "
        "With --max-seconds the run stops when its time is up; run it again to go on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--actions-days", type=positive_float, help="Keep terminal actions this many days.")
        parser.add_argument("--logs-days", type=positive_float, help="Keep execution logs this many days.")
        parser.add_argument("--ticks-days", type=positive_float, help="Keep tick rows this many days.")
        parser.add_argument(
            "--artifacts-days", type=positive_float, help="Keep artifacts (files and database rows) this many days."
        )
        parser.add_argument(
            "--batch-size", type=positive_int, help="Rows deleted per transaction (default AOL_PRUNE_BATCH_SIZE)."
        )
        parser.add_argument("--max-seconds", type=positive_float, help="Stop after this many seconds.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = retention_prune(
                dry_run=options["dry_run"],
                actions_days=options["actions_days"],
                logs_days=options["logs_days"],
                ticks_days=options["ticks_days"],
                artifacts_days=options["artifacts_days"],
                batch_size=options["batch_size"],
                max_seconds=options["max_seconds"],
            )
        except ValueError as exc:  # a malformed AOL_RETENTION_* or AOL_PRUNE_BATCH_SIZE setting
            raise CommandError(f"Cannot prune: {exc}.", returncode=EXIT_USAGE) from None
        except DatabaseError as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CommandError(
                f"Cannot prune: database error: {redact(first_line)} (is it migrated? python manage.py migrate). "
                "Batches already committed stay deleted.",
                returncode=EXIT_ERROR,
            ) from None
        style = self.style.WARNING if report.dry_run else self.style.SUCCESS
        self.stdout.write(style(report.summary()))
        if report.artifact_bytes:
            self.stdout.write(f"Artifacts freed: {report.artifact_bytes / (1024 * 1024):.1f} MB.")
        if not report.dry_run:
            self.stdout.write(
                f"{report.batches} batches in {report.seconds:.1f}s; the longest held its transaction "
                f"{report.longest_batch_seconds:.3f}s."
            )
        if not report.complete:
            self.stdout.write(
                self.style.WARNING(
                    f"Stopped when the --max-seconds time slice ({options['max_seconds']:g}s) ran out; "
                    "run aol_prune again to go on."
                )
            )
