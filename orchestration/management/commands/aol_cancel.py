"""``manage.py aol_cancel``: cancel waiting actions, or ask running ones to stop."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestration.exceptions import ControlChangeRejected
from orchestration.management.commands._common import cli_actor, positive_int
from orchestration.services.verbs import VERBS, operator_run

VERB = VERBS["cancel"]


class Command(BaseCommand):
    help = (
        "Cancel actions by id: waiting ones (PENDING, READY, RETRY, AWAITING_APPROVAL) become CANCELLED at "
        "once; RUNNING ones are asked to stop and become CANCELLED when they do. Rows are never deleted. "
        "Ids that are finished, in the DLQ or NEEDS_REVIEW, or unknown are skipped and counted; if none can "
        "be cancelled, nothing is changed (exit 1). Example: aol_cancel 41 42 --reason 'campaign pulled'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action_ids", nargs="+", type=positive_int, metavar="ACTION_ID")
        parser.add_argument("--reason", required=True, help="Why; recorded in the audit trail.")
        parser.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")

    def handle(self, *args: Any, action_ids: list[int], reason: str, actor: str | None, **options: Any) -> None:
        try:
            result = operator_run(verb=VERB, actor=actor or cli_actor(), reason=reason, action_ids=action_ids)
        except ControlChangeRejected as exc:
            raise CommandError(str(exc)) from None
        report = result.report
        assert report is not None  # the cancel verb's service always returns a BulkReport
        self.stdout.write(self.style.SUCCESS(result.message) if result.changed else result.message)
        if report.cancelled:
            self.stdout.write(f"Cancelled: {', '.join(f'#{pk}' for pk in report.cancelled)}.")
        if report.stop_requested:
            listed = ", ".join(f"#{pk}" for pk in report.stop_requested)
            self.stdout.write(f"Asked to stop: {listed}; they become CANCELLED when their attempt stops.")
