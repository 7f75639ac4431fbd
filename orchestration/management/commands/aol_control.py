"""``manage.py aol_control``: pause, resume, kill, revive, or switch PROOF on/off."""

from django.core.management.base import BaseCommand, CommandError

from orchestration.exceptions import ControlChangeRejected
from orchestration.management.commands._common import cli_actor
from orchestration.services import control

VERBS = {
    "pause": control.control_pause,
    "resume": control.control_resume,
    "kill": control.control_kill,
    "revive": control.control_revive,
}


class Command(BaseCommand):
    help = (
        "Change the daemon's control flags, recorded with who and why: "
        "aol_control pause|resume|kill|revive --reason '…', or aol_control proof on|off --reason '…'."
    )

    def add_arguments(self, parser):
        parser.add_argument("verb", choices=[*VERBS, "proof"])
        parser.add_argument("value", nargs="?", choices=["on", "off"], help="With 'proof': on or off.")
        parser.add_argument("--reason", required=True, help="Why; recorded in the audit trail.")
        parser.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")
        parser.add_argument(
            "--type",
            dest="action_type",
            default=None,
            help="With pause/resume: pause or resume only this action type; the others go on.",
        )

    def handle(self, *args, verb, value, reason, actor, action_type=None, **options):
        actor = actor or cli_actor()
        if action_type is not None:
            return self._type_pause(verb=verb, value=value, action_type=action_type, actor=actor, reason=reason)
        if verb == "proof":
            if value is None:
                raise CommandError("Say 'proof on' or 'proof off'.", returncode=2)
            change = lambda **kw: control.control_set_proof_mode(enabled=value == "on", **kw)  # noqa: E731
        elif value is not None:
            raise CommandError(f"'{verb}' takes no value (got {value!r}).", returncode=2)
        else:
            change = VERBS[verb]
        try:
            flags, changed = change(actor=actor, reason=reason)
        except ControlChangeRejected as exc:
            raise CommandError(str(exc)) from None
        summary = f"paused={flags.paused} killed={flags.killed} mode={'PROOF' if flags.proof_mode else 'REAL'}"
        if changed:
            self.stdout.write(self.style.SUCCESS(f"{verb}{' ' + value if value else ''}: done ({summary})."))
        else:
            self.stdout.write(f"{verb}{' ' + value if value else ''}: already so, nothing changed ({summary}).")

    def _type_pause(self, *, verb: str, value: str | None, action_type: str, actor: str, reason: str) -> None:
        if verb not in ("pause", "resume") or value is not None:
            raise CommandError("--type goes with 'pause' or 'resume' only.", returncode=2)
        change = control.control_pause_type if verb == "pause" else control.control_resume_type
        try:
            _, changed = change(action_type=action_type, actor=actor, reason=reason)
        except ControlChangeRejected as exc:
            raise CommandError(str(exc)) from None
        state = "paused" if verb == "pause" else "running"
        if changed:
            self.stdout.write(self.style.SUCCESS(f"{verb} {action_type}: done ({action_type} {state})."))
        else:
            self.stdout.write(f"{verb} {action_type}: already so, nothing changed ({action_type} {state}).")
