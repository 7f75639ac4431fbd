"""``manage.py aol_artifacts move --to database|files``: move existing PROOF artifacts between the stores."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from orchestration.adapters.store import DATABASE, FILES
from orchestration.conf import aol
from orchestration.dburl import redact
from orchestration.exceptions import AOLError
from orchestration.management.commands._common import positive_int
from orchestration.services.artifacts import MOVE_BATCH_SIZE, artifacts_move

EXIT_ERROR = 1
EXIT_USAGE = 2


class Command(BaseCommand):
    help = (
        "Move the PROOF artifacts that execution logs and actions refer to into one store: "
        "'move --to database' (aol_artifacts) or 'move --to files' (AOL_ARTIFACTS_DIR). Each artifact is checked "
        "against its logged SHA-256 and its references are rewritten in the transaction that stores it; old copies "
        "are deleted only after a complete pass. Idempotent: run it again after an interruption to go on. Set "
        "AOL_ARTIFACT_STORE to the target first, so new artifacts go there too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True, metavar="move")
        move = sub.add_parser("move", help="Move artifacts to one store.")
        move.add_argument("--to", required=True, choices=(DATABASE, FILES), help="The store to move them to.")
        move.add_argument("--dry-run", action="store_true", help="Count what would move; change nothing.")
        move.add_argument("--batch-size", type=positive_int, default=MOVE_BATCH_SIZE, help="Rows read per transaction.")

    def handle(self, *args: Any, **options: Any) -> None:
        to = options["to"]
        try:
            report = artifacts_move(to=to, dry_run=options["dry_run"], batch_size=options["batch_size"])
        except (ValueError, AOLError) as exc:
            raise CommandError(f"Cannot move artifacts: {exc}", returncode=EXIT_ERROR) from None
        except DatabaseError as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CommandError(
                f"Cannot move artifacts: database error: {redact(first_line)} (is it migrated? python manage.py "
                "migrate). Batches already committed stay moved; run it again to go on.",
                returncode=EXIT_ERROR,
            ) from None
        style = self.style.WARNING if report.dry_run or report.skipped else self.style.SUCCESS
        self.stdout.write(style(report.summary()))
        for label, refs in (
            ("missing", report.missing),
            ("changed since logged", report.mismatched),
            ("name taken by other bytes", report.conflicts),
        ):
            for ref in sorted(refs)[:20]:
                self.stdout.write(f"  left ({label}): {ref}")
        if aol.artifact_store != to:
            self.stdout.write(
                self.style.WARNING(
                    f"AOL_ARTIFACT_STORE is {aol.artifact_store!r}: new artifacts still go there. Set "
                    f"AOL_ARTIFACT_STORE={to} for the daemon and the web processes."
                )
            )
