"""Social networks POST_SOCIAL can publish to in REAL mode: platform name → Platform (see base.py).

A platform's module is imported the first time it is asked for: its SDK is heavy (atproto alone
takes about a second to import and a fifth of one to tear down at exit), and most processes (a
PROOF daemon, ``check_sentinels``, a PROOF-only test) never post to that network.
"""

from importlib import import_module
from typing import Any

from orchestration.adapters.platforms.base import (
    Identity,
    Platform,
    PlatformRequest,
    PostSpec,
    Published,
    TextCount,
)


class _Unloaded:
    """A registry entry whose module is not imported yet: ``module.path:ClassName``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> Platform:
        module, _, name = self.path.partition(":")
        platform: Platform = getattr(import_module(module), name)()
        return platform


class PlatformRegistry(dict[str, Platform]):
    """A dict of name → Platform whose entries are imported on first access (tests replace entries
    with ``monkeypatch.setitem`` / ``delitem`` as with any dict)."""

    def __getitem__(self, name: str) -> Platform:
        value: Any = super().__getitem__(name)
        if isinstance(value, _Unloaded):
            value = value.load()
            super().__setitem__(name, value)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default

    def values(self) -> Any:
        return [self[name] for name in self]

    def items(self) -> Any:
        return [(name, self[name]) for name in self]


def _registry(paths: dict[str, str]) -> PlatformRegistry:
    unloaded: dict[str, Any] = {
        name: _Unloaded(f"orchestration.adapters.platforms.{path}") for name, path in paths.items()
    }
    return PlatformRegistry(unloaded)


#: Every network with a REAL integration, by name: one instance each (the name is the class's ``name``).
PLATFORMS: PlatformRegistry = _registry(
    {
        "mastodon": "mastodon:MastodonPlatform",  # idempotent: an Idempotency-Key
        "bluesky": "bluesky:BlueskyPlatform",  # idempotent: a record key derived from the action
        "x": "x:XPlatform",  # not idempotent: a lost answer is looked up, else parked for review
        "linkedin": "linkedin:LinkedInPlatform",  # likewise
    }
)


def platform_get(name: str) -> Platform | None:
    """The REAL integration of network ``name`` (lower case), or None when it has none."""
    return PLATFORMS.get(name)


__all__ = ["PLATFORMS", "Identity", "Platform", "PlatformRequest", "PostSpec", "Published", "TextCount", "platform_get"]
