"""``manage.py aol_retract``: delete on its network the post a REAL action made; the action ends RETRACTED."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestration.exceptions import ControlChangeRejected
from orchestration.management.commands._common import cli_actor, positive_int
from orchestration.services.verbs import VERBS, operator_run

VERB = VERBS["retract"]


class Command(BaseCommand):
    help = (
        "Retract the post of one REAL SUCCESS POST_SOCIAL action: its network deletes it (as the account that "
        "posted it) and the action becomes RETRACTED (kept, never deleted). Refused, with nothing changed "
        "(exit 1), for a PROOF action, another status, a network that cannot delete posts, or when the network "
        "refuses or does not answer. Example: aol_retract 41 --reason 'posted by mistake'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action_id", type=positive_int, metavar="ACTION_ID")
        parser.add_argument("--reason", required=True, help="Why; recorded in the audit trail.")
        parser.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")

    def handle(self, *args: Any, action_id: int, reason: str, actor: str | None, **options: Any) -> None:
        try:
            result = operator_run(verb=VERB, actor=actor or cli_actor(), reason=reason, action_ids=[action_id])
        except ControlChangeRejected as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(result.message) if result.changed else result.message)
