"""What one operator verb is (``OperatorVerb``) and the words the verb table is written in.

The table itself is ``services/verbs.py``; the verbs on actions and their rows are in ``services/operator.py``.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from orchestration import permissions

#: How many skipped actions a report names (it counts them all).
SKIPPED_NAMED = 5

# What a verb acts on.
ACTIONS, ACTION_TYPE, FLAGS = "actions", "action type", "control flags"
# What a request naming several targets does (verbs on one action type or on the flags name one target).
BULK_ELIGIBLE = "acts on the eligible actions, skips and counts the others; refused when none is eligible"
BULK_SINGLE = "one target per request"
# The confirmation a verb asks for beyond a reason.
CONFIRM_TICK, CONFIRM_TYPE_REAL = "tick a box", "type REAL"
# Where a verb is offered. Console groups are the status view's forms; each has its own URL.
CONSOLE_FLAGS, CONSOLE_ATTENTION, CONSOLE_TYPES, CONSOLE_ACTIONS = "control", "dlq", "types", "actions"


@dataclass(frozen=True)
class OperatorVerb:
    """One operator verb, as every interface shows and runs it."""

    name: str
    label: str  # buttons and messages: "Retry"
    description: str  # menus and help: "Retry selected DLQ or NEEDS_REVIEW actions (back to PENDING)"
    audit_verb: str  # the verb of its audit and execution-log rows
    permission: str
    service: Callable[..., Any]
    target: str
    outcome: str  # what happens, after "N actions will …" or "… will"
    bulk: str
    service_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    eligible: tuple[str, ...] = ()  # statuses of the actions it acts on
    eligible_text: str = ""  # the same, for people: "none of the chosen actions is {eligible_text}"
    done: str = ""  # "3 actions {done}"
    already: str = ""  # "1 {already}": eligible, but nothing to change
    all_scope: bool = False  # may act on every eligible action (oldest first) without naming them
    asks: tuple[str, ...] = ()  # what it needs beyond the targets and a reason: ("priority",)
    flag: tuple[str, bool] | None = None  # the control flag it sets, and to what
    confirm: str = ""
    danger: bool = False
    admin: str = ""  # its admin action, or "flags" for a field of the control flags' page
    console: str = ""  # its console group (the URL it is posted to) …
    slug: str = ""  # … and its part of that URL
    cli: str = ""  # the command line that runs it
    #: A further test on one action beyond its status (one action's page offers the verb only then):
    #: retract needs a REAL post on a platform that can delete it.
    applies_to: Callable[[Any], bool] | None = None

    def call(self, **kwargs: Any) -> Any:
        return self.service(**self.service_kwargs, **kwargs)

    def refusal(self, skipped: Mapping[int, str] | None, *, chosen: bool = True) -> str:
        """Why a request with no eligible action changes nothing."""
        if not chosen:
            return f"Nothing to {self.label.lower()}: no action is {self.eligible_text}. Nothing changed."
        named = f": {skipped_detail(skipped)}" if skipped else ""
        return (
            f"Nothing to {self.label.lower()}: none of the chosen actions is {self.eligible_text}{named}. "
            "Nothing changed."
        )


def action_verb(name: str, label: str, **fields: Any) -> OperatorVerb:
    return OperatorVerb(
        name=name, label=label, permission=permissions.MANAGE_DLQ, target=ACTIONS, bulk=BULK_ELIGIBLE, **fields
    )


def count_text(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def skipped_detail(skipped: Mapping[int, str]) -> str:
    named = [f"#{pk} is {status}" if status else f"#{pk} does not exist" for pk, status in skipped.items()]
    rest = len(named) - SKIPPED_NAMED
    return ", ".join(named[:SKIPPED_NAMED]) + (f" and {rest} more" if rest > 0 else "")
