"""``manage.py aol_enqueue``: queue one action, or many from a JSON-lines file."""

import json
import sys
from datetime import UTC

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from orchestration.adapters import action_types
from orchestration.exceptions import InvalidAction
from orchestration.management.commands._common import priority
from orchestration.models import MAX_PRIORITY, MIN_PRIORITY
from orchestration.services.queue import action_enqueue, action_enqueue_many, action_payload_from_json

#: How many conflicting lines are listed one by one before the rest are only counted.
MAX_CONFLICTS_LISTED = 20


def _not_before(text: str, *, label: str):
    try:
        value = parse_datetime(text) if isinstance(text, str) else None
    except ValueError:  # well-formed but impossible, e.g. month 13
        value = None
    if value is None:
        raise CommandError(f"{label} {text!r} is not an ISO 8601 time (e.g. 2026-11-21T18:00:00Z).")
    return value.replace(tzinfo=UTC) if timezone.is_naive(value) else value


class Command(BaseCommand):
    help = (
        "Queue an action. Example: aol_enqueue POST_SOCIAL --payload "
        '\'{"platform": "twitter", "message": "hello"}\' --key launch-001. '
        "Reusing a key with the same payload returns the existing action; with another payload it is an error. "
        "Many at once: aol_enqueue --from-file actions.jsonl (one "
        '{"action_type": …, "payload": {…}, "idempotency_key": …, "not_before": …} per line; "-" reads stdin); '
        "an invalid line enqueues nothing."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("action_type", nargs="?", help=f"One of: {', '.join(action_types())}")
        parser.add_argument("--payload", help="The payload as a JSON object.")
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
        parser.add_argument(
            "--from-file",
            metavar="FILE",
            help="Queue every action of a JSON-lines file ('-' for standard input) in one transaction.",
        )

    def handle(self, *args, **options):
        if options["from_file"]:
            given = [name for name in ("action_type", "payload", "key", "not_before") if options[name]]
            if given:
                names = ", ".join("action_type" if n == "action_type" else f"--{n.replace('_', '-')}" for n in given)
                raise CommandError(f"--from-file takes each action from the file; drop {names}.", returncode=2)
            return self._enqueue_file(options["from_file"], options.get("stdin") or sys.stdin)
        if not options["action_type"] or options["payload"] is None:
            raise CommandError("Give an action type and --payload, or --from-file FILE.", returncode=2)
        not_before = _not_before(options["not_before"], label="--not-before") if options["not_before"] else None
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

    def _enqueue_file(self, path: str, stdin) -> None:
        name = "standard input" if path == "-" else path
        try:
            if path == "-":
                items = self._read_lines(stdin)
            else:
                with open(path, encoding="utf-8") as handle:
                    items = self._read_lines(handle)
        except OSError as exc:
            raise CommandError(f"Cannot read {name}: {exc.strerror or exc}.") from None
        except UnicodeDecodeError as exc:
            raise CommandError(f"Nothing enqueued: {name} is not UTF-8 text ({exc.reason}).") from None
        try:
            report = action_enqueue_many(items=items)
        except InvalidAction as exc:
            # The service numbers items from 1, one per line, so "Item 3" is line 3.
            raise CommandError(f"Nothing enqueued: {str(exc).replace('Item', 'Line', 1)}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(items)} action(s) read from {name}: {len(report.created)} enqueued, "
                f"{len(report.existing)} already existed with the same payload, {len(report.conflicts)} conflict(s)."
            )
        )
        if report.conflicts:
            for conflict in report.conflicts[:MAX_CONFLICTS_LISTED]:
                self.stderr.write(
                    f"Line {conflict.item}: key {conflict.idempotency_key!r} is already used by action "
                    f"#{conflict.action_id} with another type or payload; not enqueued."
                )
            if len(report.conflicts) > MAX_CONFLICTS_LISTED:
                self.stderr.write(f"… and {len(report.conflicts) - MAX_CONFLICTS_LISTED} more.")
            raise CommandError(
                f"{len(report.conflicts)} line(s) not enqueued because their keys are already used with other "
                "payloads; the other lines were enqueued.",
                returncode=1,
            )

    def _read_lines(self, handle) -> list[dict]:
        items = []
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                raise CommandError(f"Nothing enqueued: line {number} is empty (one JSON object per line).")
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CommandError(f"Nothing enqueued: line {number} is not valid JSON: {exc}.") from None
            if isinstance(item, dict) and item.get("not_before") is not None:
                item["not_before"] = _not_before(
                    item["not_before"], label=f"Nothing enqueued: line {number}: not_before"
                )
            items.append(item)
        return items
