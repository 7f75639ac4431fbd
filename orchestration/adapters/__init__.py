"""The adapter registry: action type → adapter. ``adapters_all()`` is the one registry every caller reads.

Built-in adapters are listed in ``_BUILT_IN``. ``AOL_EXTRA_ADAPTERS`` (dotted paths of adapter
classes) adds more, or replaces a built-in of the same action type, without editing this file;
the test suite uses it to register fake adapters that hang or kill their process.
"""

from functools import cache

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from orchestration.adapters.base import ActionAdapter, ActionResult, Attempt, ProofRender
from orchestration.adapters.draft_social import DraftSocialAdapter
from orchestration.adapters.post_social import PostSocialAdapter
from orchestration.adapters.send_email import SendEmailAdapter
from orchestration.adapters.sleep import SleepAdapter
from orchestration.adapters.webhook import WebhookAdapter
from orchestration.conf import aol
from orchestration.exceptions import UnknownActionType

_BUILT_IN: dict[str, ActionAdapter] = {
    adapter.action_type: adapter
    for adapter in (PostSocialAdapter(), DraftSocialAdapter(), SendEmailAdapter(), SleepAdapter(), WebhookAdapter())
}


@cache
def _extra_adapters(paths: tuple[str, ...]) -> dict[str, ActionAdapter]:
    extra = {}
    for path in paths:
        try:
            adapter = import_string(path)()
        except (ImportError, TypeError) as exc:
            raise ImproperlyConfigured(f"AOL_EXTRA_ADAPTERS: cannot load adapter {path!r}: {exc}") from None
        if not isinstance(adapter, ActionAdapter):
            raise ImproperlyConfigured(f"AOL_EXTRA_ADAPTERS: {path!r} is not an ActionAdapter subclass.")
        extra[adapter.action_type] = adapter
    return extra


def adapters_all() -> dict[str, ActionAdapter]:
    """Every adapter, by action type: the built-ins plus AOL_EXTRA_ADAPTERS (read at call time). Do not mutate."""
    paths = tuple(aol.extra_adapters or ())
    return {**_BUILT_IN, **_extra_adapters(paths)} if paths else _BUILT_IN


def adapter_get(action_type: str) -> ActionAdapter:
    """The adapter for ``action_type``; UnknownActionType lists the known ones."""
    registry = adapters_all()
    try:
        return registry[action_type]
    except (KeyError, TypeError):
        known = ", ".join(sorted(registry))
        raise UnknownActionType(f"Unknown action type {action_type!r}; known types: {known}.") from None


def action_types() -> list[str]:
    """Every registered action type, sorted."""
    return sorted(adapters_all())


__all__ = [
    "ActionAdapter",
    "ActionResult",
    "Attempt",
    "ProofRender",
    "action_types",
    "adapter_get",
    "adapters_all",
]
