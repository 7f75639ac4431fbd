"""``manage.py aol_cancel``: cancel waiting actions, or ask running ones to stop."""

from django.core.management.base import BaseCommand, CommandError

from orchestration.exceptions import ControlChangeRejected
from orchestration.management.commands._common import cli_actor, positive_int
from orchestration.services.flow import action_cancel


class Command(BaseCommand):
    help = (
        "Cancel actions by id: waiting ones (PENDING, READY, RETRY, AWAITING_APPROVAL) become CANCELLED at "
        "once; RUNNING ones are asked to stop and become CANCELLED when they do. Rows are never deleted. "
        "If any id is finished, in the DLQ or unknown, nothing is changed. "
        "Example: aol_cancel 41 42 --reason 'campaign pulled'."
    )

    def add_arguments(self, parser):
        parser.add_argument("action_ids", nargs="+", type=positive_int, metavar="ACTION_ID")
        parser.add_argument("--reason", required=True, help="Why; recorded in the audit trail.")
        parser.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")

    def handle(self, *args, action_ids, reason, actor, **options):
        try:
            report = action_cancel(action_ids=action_ids, actor=actor or cli_actor(), reason=reason)
        except ControlChangeRejected as exc:
            raise CommandError(str(exc)) from None
        if report.cancelled:
            listed = ", ".join(f"#{pk}" for pk in report.cancelled)
            self.stdout.write(self.style.SUCCESS(f"{len(report.cancelled)} action(s) cancelled: {listed}."))
        if report.stop_requested:
            listed = ", ".join(f"#{pk}" for pk in report.stop_requested)
            self.stdout.write(
                f"{len(report.stop_requested)} running action(s) asked to stop: {listed}; "
                "they become CANCELLED when their attempt stops."
            )
        if not report.cancelled and not report.stop_requested:
            self.stdout.write("Nothing changed: the running action(s) had already been asked to stop.")
