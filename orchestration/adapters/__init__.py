"""The adapter registry: action type → adapter. Add an adapter by adding it to ADAPTERS."""

from orchestration.adapters.base import ActionAdapter, ActionResult
from orchestration.adapters.draft_social import DraftSocialAdapter
from orchestration.adapters.post_social import PostSocialAdapter
from orchestration.adapters.send_email import SendEmailAdapter
from orchestration.exceptions import UnknownActionType

ADAPTERS: dict[str, ActionAdapter] = {
    adapter.action_type: adapter for adapter in (PostSocialAdapter(), DraftSocialAdapter(), SendEmailAdapter())
}


def adapter_get(action_type: str) -> ActionAdapter:
    """The adapter for ``action_type``; UnknownActionType lists the known ones."""
    try:
        return ADAPTERS[action_type]
    except (KeyError, TypeError):
        known = ", ".join(sorted(ADAPTERS))
        raise UnknownActionType(f"Unknown action type {action_type!r}; known types: {known}.") from None


def action_types() -> list[str]:
    return sorted(ADAPTERS)


__all__ = ["ADAPTERS", "ActionAdapter", "ActionResult", "action_types", "adapter_get"]
