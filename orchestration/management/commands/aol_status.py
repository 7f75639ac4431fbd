"""``manage.py aol_status``: flags, lease holder, last tick and queue counts."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from orchestration.dburl import database_url_masked
from orchestration.services.status import status_snapshot


class Command(BaseCommand):
    help = "Show the AOL's control flags, lease holder and expiry, last tick and action counts per status."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the snapshot as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        snapshot = status_snapshot()
        if options["json"]:
            self.stdout.write(json.dumps(snapshot, indent=2))
            return
        flags, lease, tick = snapshot["flags"], snapshot["lease"], snapshot["last_tick"]
        self.stdout.write(f"Database:  {database_url_masked()}")
        self.stdout.write(
            f"Mode:      {flags['mode']}   paused: {flags['paused']}   killed: {flags['killed']}"
            + (f"   (last change by {flags['updated_by']})" if flags["updated_by"] else "")
        )
        if flags["mode_note"]:
            self.stdout.write(f"           {flags['mode_note']}")
        if lease["holder"]:
            self.stdout.write(
                f"Lease:     held by {lease['holder']}, expires in {lease['expires_in_seconds']:.1f}s "
                f"(token {lease['token']}, {lease['state']})"
            )
        else:
            self.stdout.write("Lease:     free: no daemon is running")
        if snapshot["daemon_hint"]:
            self.stdout.write(f"           {snapshot['daemon_hint']}")
        if tick:
            self.stdout.write(
                f"Last tick: {tick['status']} at {tick['started_at']}, {tick['actions_attempted']} attempted, "
                f"{tick['actions_succeeded']} succeeded, {tick['duration_seconds']:.2f}s"
            )
        else:
            self.stdout.write("Last tick: none yet")
        environment = snapshot["environment"]
        if environment["blocked"]:
            self.stdout.write(
                f"Blocked:   claiming paused since {environment['since']} ({environment['reason']}): "
                f"{environment['detail']}"
            )
        estimated = snapshot["counts_estimated"]
        counts = "  ".join(
            f"{status}: {'~' if status in estimated else ''}{n}" for status, n in snapshot["counts"].items()
        )
        self.stdout.write(f"Actions:   {counts}")
        if estimated:
            self.stdout.write(f"           ~ {snapshot['counts_note']}")
        for pause in snapshot["paused_types"]:
            self.stdout.write(
                f"Paused:    {pause['action_type']} by {pause['paused_by']} at {pause['paused_at']}: {pause['reason']}"
            )
