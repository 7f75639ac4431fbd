"""What one daemon runs with, and the exit codes of ``run_aol_daemon``."""

from dataclasses import dataclass
from typing import Any

from orchestration.conf import aol
from orchestration.services.lease import lease_owner_new

# Exit codes of run_aol_daemon (documented in the README). With --wait-when-killed (as `make run` starts
# it) the kill flag is no exit: the daemon stops its work, keeps its lease and waits for a revive.
EXIT_OK = 0  # ran its ticks, was killed by the flag, or stopped by SIGINT/SIGTERM/SIGHUP
EXIT_ERROR = 1  # could not start: database unreachable or migrations unapplied
EXIT_USAGE = 2  # invalid arguments
EXIT_LEASE_HELD = 3  # another live daemon holds the lease; nothing was touched
EXIT_LEASE_LOST = 4  # the lease was taken over while running; this daemon stopped writing
EXIT_WEDGED = 5  # adapter threads that overran their deadline pile up; restart the process


@dataclass(frozen=True)
class DaemonConfig:
    """What one daemon runs with; its defaults are the AOL settings' (``from_settings``)."""

    owner: str
    force_proof: bool
    max_ticks: int | None
    interval_seconds: float
    max_actions_per_tick: int
    claim_batch_size: int
    max_tick_seconds: float
    heartbeat_seconds: float
    lease_ttl_seconds: float
    control_poll_seconds: float
    standby: bool
    max_abandoned_threads: int
    wake_on_enqueue: bool
    wait_when_killed: bool
    real_concurrency: int  # REAL attempts at once (AOL_REAL_CONCURRENCY); PROOF runs one at a time

    @classmethod
    def from_settings(cls, **overrides: Any) -> "DaemonConfig":
        """The configuration from AOL_* settings, with command-line ``overrides`` (None = unset)."""
        values: dict[str, Any] = {
            "owner": lease_owner_new(),
            "force_proof": False,
            "max_ticks": aol.max_ticks,
            "interval_seconds": aol.tick_interval_seconds,
            "max_actions_per_tick": aol.max_actions_per_tick,
            "claim_batch_size": aol.claim_batch_size,
            "max_tick_seconds": aol.max_tick_seconds,
            "heartbeat_seconds": aol.heartbeat_seconds,
            "lease_ttl_seconds": aol.lease_ttl_seconds,
            "control_poll_seconds": aol.control_poll_seconds,
            "standby": False,
            "max_abandoned_threads": aol.max_abandoned_threads,
            "wake_on_enqueue": aol.wake_on_enqueue,
            "wait_when_killed": False,
            "real_concurrency": aol.real_concurrency,
        }
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def proof_forced_by(self) -> str:
        """Why this daemon runs in PROOF whatever the proof_mode flag says ('' when the flag decides)."""
        reasons = []
        if self.force_proof:
            reasons.append("its command line (--proof)")
        if aol.proof_mode:
            reasons.append("AOL_PROOF_MODE=1")
        return " and ".join(reasons)
