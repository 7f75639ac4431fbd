"""Social networks POST_SOCIAL can publish to in REAL mode: platform name → Platform (see base.py)."""

from orchestration.adapters.platforms.base import (
    Identity,
    Platform,
    PlatformRequest,
    PostSpec,
    Published,
    TextCount,
)
from orchestration.adapters.platforms.bluesky import BlueskyPlatform
from orchestration.adapters.platforms.linkedin import LinkedInPlatform
from orchestration.adapters.platforms.mastodon import MastodonPlatform
from orchestration.adapters.platforms.x import XPlatform

#: Every network with a REAL integration, by name: one instance each.
PLATFORMS: dict[str, Platform] = {
    platform.name: platform
    for platform in (
        MastodonPlatform(),  # idempotent: an Idempotency-Key
        BlueskyPlatform(),  # idempotent: a record key derived from the action
        XPlatform(),  # not idempotent: a lost answer is looked up, else parked for review
        LinkedInPlatform(),  # likewise
    )
}


def platform_get(name: str) -> Platform | None:
    """The REAL integration of network ``name`` (lower case), or None when it has none."""
    return PLATFORMS.get(name)


__all__ = ["PLATFORMS", "Identity", "Platform", "PlatformRequest", "PostSpec", "Published", "TextCount", "platform_get"]
