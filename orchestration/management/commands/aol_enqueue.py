"""``manage.py aol_enqueue``: queue one action, or many from a JSON-lines file."""

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from orchestration.adapters import action_types
from orchestration.exceptions import ControlChangeRejected, InvalidAction
from orchestration.management.commands._common import cli_actor, priority
from orchestration.models import MAX_PRIORITY, MIN_PRIORITY
from orchestration.services.enqueue import (
    action_enqueue_by_operator,
    action_enqueue_many_by_operator,
    action_payload_from_json,
)

#: How many conflicting lines are listed one by one before the rest are only counted.
MAX_CONFLICTS_LISTED = 20
#: The audit trail's "why" when the operator gives no --reason.
DEFAULT_REASON = "queued with aol_enqueue (no --reason given)"


def _not_before(text: str, *, label: str) -> datetime:
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
        '{"action_type": …, "payload": {…}, "idempotency_key": …, "not_before": …, "priority": …, '
        '"requires_approval": …} per line; "-" reads stdin); --priority, --requires-approval and --not-before '
        "then apply to the lines that do not say. An invalid line enqueues nothing. Every call is audited "
        "with --actor and --reason."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action_type", nargs="?", help=f"One of: {', '.join(action_types())}")
        parser.add_argument("--payload", help="The payload as a JSON object.")
        parser.add_argument("--key", help="Idempotency key (default: a new random key).")
        parser.add_argument("--not-before", help="Do not run before this ISO 8601 time (UTC when no offset is given).")
        parser.add_argument(
            "--priority",
            type=priority,
            default=None,
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
        parser.add_argument("--reason", default=DEFAULT_REASON, help="Why; recorded in the audit trail.")
        parser.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = options["actor"] or cli_actor()
        not_before = _not_before(options["not_before"], label="--not-before") if options["not_before"] else None
        if options["from_file"]:
            given = [name for name in ("action_type", "payload", "key") if options[name]]
            if given:
                names = ", ".join("action_type" if n == "action_type" else f"--{n.replace('_', '-')}" for n in given)
                raise CommandError(f"--from-file takes each action from the file; drop {names}.", returncode=2)
            defaults = {
                **({"not_before": not_before} if not_before is not None else {}),
                **({"priority": options["priority"]} if options["priority"] is not None else {}),
                **({"requires_approval": True} if options["requires_approval"] else {}),
            }
            return self._enqueue_file(
                options["from_file"],
                options.get("stdin") or sys.stdin,
                defaults=defaults,
                actor=actor,
                reason=options["reason"],
            )
        if not options["action_type"] or options["payload"] is None:
            raise CommandError("Give an action type and --payload, or --from-file FILE.", returncode=2)
        try:
            payload = action_payload_from_json(text=options["payload"])
            action, created = action_enqueue_by_operator(
                action_type=options["action_type"],
                payload=payload,
                idempotency_key=options["key"],
                not_before=not_before,
                priority=0 if options["priority"] is None else options["priority"],
                requires_approval=options["requires_approval"],
                actor=actor,
                reason=options["reason"],
            )
        except (InvalidAction, ControlChangeRejected) as exc:
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

    def _enqueue_file(
        self, path: str, stdin: Iterable[str], *, defaults: dict[str, Any], actor: str, reason: str
    ) -> None:
        """Queue every line of ``path``; ``defaults`` fill the fields a line does not give."""
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
        if defaults:
            items = [{**defaults, **item} if isinstance(item, dict) else item for item in items]
        try:
            report = action_enqueue_many_by_operator(items=items, actor=actor, reason=reason, source=name)
        except InvalidAction as exc:
            # Items are numbered from 1, one per line (an empty line is refused), so item 3 is line 3.
            raise CommandError(f"Nothing enqueued: {exc.located('Line')}") from None
        except ControlChangeRejected as exc:
            raise CommandError(f"Nothing enqueued: {exc}") from None
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
                    f"#{conflict.action_id} with another type, payload or approval requirement; not enqueued."
                )
            if len(report.conflicts) > MAX_CONFLICTS_LISTED:
                self.stderr.write(f"… and {len(report.conflicts) - MAX_CONFLICTS_LISTED} more.")
            raise CommandError(
                f"{len(report.conflicts)} line(s) not enqueued because their keys are already used with other "
                "payloads; the other lines were enqueued.",
                returncode=1,
            )

    def _read_lines(self, handle: Iterable[str]) -> list[dict[str, Any]]:
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
