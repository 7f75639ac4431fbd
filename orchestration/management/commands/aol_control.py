"""``manage.py aol_control``: pause, resume, kill, revive, switch PROOF on/off, or pause one action type."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestration.exceptions import ControlChangeRejected
from orchestration.management.commands._common import cli_actor
from orchestration.services.operator_verb import OperatorVerb
from orchestration.services.verbs import VERBS, operator_run

#: The command lines this command runs, as the verb table spells them (``aol_control pause --type TYPE``).
COMMAND_VERBS: dict[str, OperatorVerb] = {
    verb.cli.removeprefix("aol_control "): verb for verb in VERBS.values() if verb.cli.startswith("aol_control ")
}
TYPE_OPTION = " --type TYPE"


class Command(BaseCommand):
    help = "Change the daemon's control flags or pause one action type, recorded with who and why. " + " ".join(
        f"{line} --reason '…': {verb.description[0].lower()}{verb.description[1:]}."
        for line, verb in COMMAND_VERBS.items()
    )

    def add_arguments(self, parser: CommandParser) -> None:
        words = dict.fromkeys(line.split()[0] for line in COMMAND_VERBS)
        parser.add_argument("verb", choices=list(words))
        values = dict.fromkeys(line.split()[1] for line in COMMAND_VERBS if len(line.split()) == 2)
        parser.add_argument("value", nargs="?", choices=list(values), help="With 'proof': on or off.")
        parser.add_argument("--reason", required=True, help="Why; recorded in the audit trail.")
        parser.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")
        parser.add_argument(
            "--type",
            dest="action_type",
            default=None,
            help="With pause/resume: pause or resume only this action type; the others go on.",
        )

    def handle(
        self,
        *args: Any,
        verb: str,
        value: str | None,
        reason: str,
        actor: str | None,
        action_type: str | None = None,
        **options: Any,
    ) -> None:
        typed = " ".join(word for word in (verb, value) if word)
        line = typed + (TYPE_OPTION if action_type is not None else "")
        chosen = COMMAND_VERBS.get(line)
        if chosen is None:
            raise CommandError(self._usage_error(verb=verb, value=value, action_type=action_type), returncode=2)
        params: dict[str, Any] = {"action_type": action_type} if action_type is not None else {}
        try:
            result = operator_run(verb=chosen, actor=actor or cli_actor(), reason=reason, **params)
        except ControlChangeRejected as exc:
            raise CommandError(str(exc)) from None
        shown = f"{typed} {action_type}" if action_type is not None else typed
        text = f"{shown}: {result.message}"
        self.stdout.write(self.style.SUCCESS(text) if result.changed else text)

    @staticmethod
    def _usage_error(*, verb: str, value: str | None, action_type: str | None) -> str:
        if action_type is not None:
            takes_type = sorted(line.split()[0] for line in COMMAND_VERBS if line.endswith(TYPE_OPTION))
            return f"--type goes with {' or '.join(repr(word) for word in takes_type)} only."
        values = [line.split()[1] for line in COMMAND_VERBS if line.split()[0] == verb and len(line.split()) == 2]
        if values and value is None:
            return f"Say {' or '.join(repr(f'{verb} {v}') for v in values)}."
        return f"'{verb}' takes no value (got {value!r})."
