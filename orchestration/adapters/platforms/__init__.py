"""Social networks POST_SOCIAL can publish to in REAL mode: platform name → Platform (see base.py)."""

from orchestration.adapters.platforms import linkedin as _linkedin
from orchestration.adapters.platforms import x as _x
from orchestration.adapters.platforms.base import (
    Identity,
    Platform,
    PlatformRequest,
    PostSpec,
    Published,
    TextCount,
)

#: Every network with a REAL integration, by name. Each platform module adds its one line here.
PLATFORMS: dict[str, Platform] = {}

PLATFORMS[_x.PLATFORM.name] = _x.PLATFORM  # X: not idempotent, found by lookup or parked for review
PLATFORMS[_linkedin.PLATFORM.name] = _linkedin.PLATFORM  # LinkedIn: likewise


def platform_get(name: str) -> Platform | None:
    """The REAL integration of network ``name`` (lower case), or None when it has none."""
    return PLATFORMS.get(name)


__all__ = ["PLATFORMS", "Identity", "Platform", "PlatformRequest", "PostSpec", "Published", "TextCount", "platform_get"]
