"""Social networks POST_SOCIAL can publish to in REAL mode: platform name → Platform (see base.py)."""

from orchestration.adapters.platforms.base import (
    Identity,
    Platform,
    PlatformRequest,
    PostSpec,
    Published,
    TextCount,
)
from orchestration.adapters.platforms.mastodon import MastodonPlatform

#: Every network with a REAL integration, by name. Each platform module adds its one line here.
PLATFORMS: dict[str, Platform] = {
    "mastodon": MastodonPlatform(),
}


def platform_get(name: str) -> Platform | None:
    """The REAL integration of network ``name`` (lower case), or None when it has none."""
    return PLATFORMS.get(name)


__all__ = ["PLATFORMS", "Identity", "Platform", "PlatformRequest", "PostSpec", "Published", "TextCount", "platform_get"]

from orchestration.adapters.platforms.bluesky import BlueskyPlatform  # noqa: E402  (needs PLATFORMS defined)

PLATFORMS[BlueskyPlatform.name] = BlueskyPlatform()
