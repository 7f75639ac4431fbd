"""``manage.py aol_enqueue``: queue one action from the command line."""

from datetime import UTC

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from orchestration.adapters import action_types
from orchestration.exceptions import InvalidAction
from orchestration.management.commands._common import priority
from orchestration.models import MAX_PRIORITY, MIN_PRIORITY
from orchestration.services.queue import action_enqueue, action_payload_from_json


class Command(BaseCommand):
    help = (
        "Queue an action. Example: aol_enqueue POST_SOCIAL --payload "
        '\'{"platform": "twitter", "message": "hello"}\' --key launch-001. '
        "Reusing a key with the same payload returns the existing action; with another payload it is an error."
    )

    def add_arguments(self, parser):
        parser.add_argument("action_type", help=f"One of: {', '.join(action_types())}")
        parser.add_argument("--payload", required=True, help="The payload as a JSON object.")
        parser.add_argument("--key", help="Idempotency key (default: a new random key).")
        parser.add_argument("--not-before", help="Do not run before this ISO 8601 time (UTC when no offset is given).")
        parser.add_argument(
            "--priority",
            type=priority,
            default=0,
            help=f"{MIN_PRIORITY} to {MAX_PRIORITY}, higher runs first (default 0); first in, first out within one.",
        )
        parser.add_argument(
            "--requires-approval",
            action="store_true",
            help="In REAL mode, run it in PROOF first and wait for a person to approve the artifact.",
        )

    def handle(self, *args, **options):
        not_before = None
        if options["not_before"]:
            not_before = parse_datetime(options["not_before"])
            if not_before is None:
                raise CommandError(
                    f"--not-before {options['not_before']!r} is not an ISO 8601 time (e.g. 2026-11-21T18:00:00Z)."
                )
            if timezone.is_naive(not_before):
                not_before = not_before.replace(tzinfo=UTC)
        try:
            payload = action_payload_from_json(text=options["payload"])
            action, created = action_enqueue(
                action_type=options["action_type"],
                payload=payload,
                idempotency_key=options["key"],
                not_before=not_before,
                priority=options["priority"],
                requires_approval=options["requires_approval"],
            )
        except InvalidAction as exc:
            raise CommandError(f"Nothing enqueued: {exc}") from None
        described = (
            f"Action #{action.pk} ({action.action_type}, key {action.idempotency_key}, {action.status}"
            + (f", priority {action.priority}" if action.priority else "")
            + (", requires approval" if action.requires_approval else "")
            + ")"
        )
        if created:
            self.stdout.write(self.style.SUCCESS(f"{described} enqueued."))
        else:
            self.stdout.write(f"{described} already exists for this key; nothing written.")
