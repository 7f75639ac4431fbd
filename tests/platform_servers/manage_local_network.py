"""``manage.py`` with the local test network registered, for the tests that run a command as a subprocess.

A test's monkeypatched PLATFORMS does not reach another process; this entry point registers
LocalNetwork as ``mastodon`` (and LocalNetworkNoRetract as ``x``) exactly as the ``local_network``
fixture does, drops the networks named in ``AOL_TEST_PLATFORMS_ABSENT`` (comma-separated), then runs
the command as manage.py would: ``python tests/platform_servers/manage_local_network.py aol_retract 7 …``.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Python put this script's folder first on the path, where mastodon.py and bluesky.py (the local servers)
# would shadow the SDKs of those names: the project root takes its place.
sys.path[0] = str(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicmo_site.settings")

import django  # noqa: E402

django.setup()

from django.core.management import execute_from_command_line  # noqa: E402

from orchestration.adapters.platforms import PLATFORMS  # noqa: E402
from tests.platform_servers.local_network import LocalNetwork, LocalNetworkNoRetract  # noqa: E402

PLATFORMS[LocalNetwork.name] = LocalNetwork()
PLATFORMS[LocalNetworkNoRetract.name] = LocalNetworkNoRetract()
for absent in filter(None, os.environ.get("AOL_TEST_PLATFORMS_ABSENT", "").split(",")):
    PLATFORMS.pop(absent.strip(), None)

if __name__ == "__main__":
    execute_from_command_line(["manage.py", *sys.argv[1:]])
