"""Formatting for the console's views; static/orchestration/console.js formats the refreshed values alike."""

import json
from datetime import UTC, datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.dateparse import parse_datetime

register = template.Library()


#: The console's one date format, with its zone: ``2026-12-01 02:16:33 UTC``.
CONSOLE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


@register.filter
def short_time(value: str | datetime | None) -> str:
    """An ISO 8601 string or datetime as ``YYYY-MM-DD HH:MM:SS UTC``, or '—'."""
    if not value:
        return "—"
    moment = parse_datetime(value) if isinstance(value, str) else value
    if moment is None:
        return str(value)
    if timezone.is_aware(moment):
        moment = moment.astimezone(UTC)
    return moment.strftime(CONSOLE_TIME_FORMAT)


@register.filter
def last_change(flags: dict[str, Any]) -> str:
    """``boss, 2026-11-30 19:07:07``, or that no operator changed the flags yet (a fresh database)."""
    if not flags.get("updated_by"):
        return "none yet: the defaults"
    return f"{flags['updated_by']}, {short_time(flags.get('updated_at'))}"


@register.filter
def seconds(value: float | str | None) -> str:
    """``12.3 s``, or '—' when unknown."""
    if value is None or value == "":
        return "—"
    return f"{float(value):.1f} s"


@register.filter
def ago(value: float | str | None) -> str:
    """A number of seconds as ``12 s ago`` / ``3 min ago`` / ``2 h ago``."""
    if value is None or value == "":
        return "—"
    elapsed = max(0.0, float(value))
    if elapsed < 120:
        return f"{elapsed:.0f} s ago"
    if elapsed < 7200:
        return f"{elapsed / 60:.0f} min ago"
    return f"{elapsed / 3600:.1f} h ago"


@register.filter
def thousands(value: object) -> str:
    """``889,000``: queue counts run into millions."""
    return f"{value:,}" if isinstance(value, int) else str(value)


@register.filter
def yesno_upper(value: object) -> str:
    return "YES" if value else "no"


@register.filter
def compact_json(value: object) -> str:
    """A small dict as ``key=value, …`` for the audit table."""
    if not value:
        return "—"
    if isinstance(value, dict):
        return ", ".join(
            f"{key}={json.dumps(item) if not isinstance(item, str) else item}" for key, item in value.items()
        )
    return json.dumps(value)


@register.filter
def get_item(mapping: dict[str, Any] | None, key: str) -> Any:
    return mapping.get(key) if mapping else None
