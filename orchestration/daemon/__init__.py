"""The AOL daemon: the tick loop that ``manage.py run_aol_daemon`` runs (see loop.py)."""

from orchestration.daemon.config import (
    EXIT_ERROR,
    EXIT_LEASE_HELD,
    EXIT_LEASE_LOST,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WEDGED,
    DaemonConfig,
)
from orchestration.daemon.loop import Daemon

__all__ = [
    "EXIT_ERROR",
    "EXIT_LEASE_HELD",
    "EXIT_LEASE_LOST",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_WEDGED",
    "Daemon",
    "DaemonConfig",
]
