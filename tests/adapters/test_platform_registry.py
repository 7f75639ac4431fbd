"""The platform registry: every network loads under its own name, and only when a process needs it."""

import subprocess
import sys
from pathlib import Path

from orchestration.adapters.platforms import PLATFORMS, platform_get

ROOT = Path(__file__).resolve().parents[2]


def test_platforms__each_entry_loads_as_the_network_of_its_name():
    assert sorted(PLATFORMS) == ["bluesky", "linkedin", "mastodon", "x"]
    for name in PLATFORMS:
        assert platform_get(name) is PLATFORMS[name]
        assert PLATFORMS[name].name == name
    assert platform_get("threads") is None


def test_platforms__a_process_that_posts_nowhere_never_imports_a_platform_sdk():
    """A PROOF daemon or check_sentinels must not pay for atproto (a second to import, a fifth to tear down)."""
    code = (
        "import django, os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'aicmo_site.settings'; django.setup()\n"
        "import orchestration.daemon.loop, orchestration.services.enqueue\n"
        "from orchestration.services.enqueue import action_enqueue\n"
        "print(sorted(m for m in ('atproto', 'mastodon') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
