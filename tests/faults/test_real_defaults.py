"""The real default timings (30 s lease TTL, 5 s heartbeat, 5 s interval), not the suite's short ones."""

import signal
import time

import pytest

from orchestration.models import Action, ActionStatus, Lease
from orchestration.services.enqueue import action_enqueue
from tests.conftest import FAST_DAEMON_ENV, DaemonProcess, wait_until

pytestmark = [
    pytest.mark.faults,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres_only,
]  # database-agnostic timings: once per run is enough

TTL, HEARTBEAT, INTERVAL = 30.0, 5.0, 5.0


def test_real_defaults__heartbeat_renews_every_5s__standby_takes_over_within_ttl_plus_interval(daemon_env, tmp_path):
    """Invariant, with the shipped defaults: while the holder works on a long action its watchdog renews the
    30 s lease every 5 s; after SIGKILL a standby takes over no earlier than the lease could expire
    and within TTL + one interval (35 s), and recovers the orphaned action."""
    env = {name: value for name, value in daemon_env.items() if name not in FAST_DAEMON_ENV}
    action = action_enqueue(action_type="SLEEP", payload={"seconds": 15}, idempotency_key="defaults")[0]
    holder = DaemonProcess(["--proof"], env, tmp_path / "holder.log")
    standby = None
    try:
        holder.wait_for_output("Lease acquired")
        assert "lease TTL 30s" in holder.output()
        standby = DaemonProcess(["--proof", "--standby"], env, tmp_path / "standby.log")
        standby.wait_for_output("Standby: lease held by")
        wait_until(lambda: Action.objects.filter(pk=action.pk, status=ActionStatus.RUNNING).exists())

        renewals = set()
        watch_until = time.monotonic() + 11
        while time.monotonic() < watch_until:
            lease = Lease.objects.get()
            renewals.add(lease.renewed_at)
            assert abs((lease.expires_at - lease.renewed_at).total_seconds() - TTL) < 0.01
            time.sleep(0.1)
        gaps = [(b - a).total_seconds() for a, b in zip(sorted(renewals), sorted(renewals)[1:], strict=False)]
        assert len(gaps) >= 2 and all(HEARTBEAT - 0.5 <= gap <= HEARTBEAT + 1.0 for gap in gaps), gaps

        holder.signal(signal.SIGKILL)
        killed_at = time.time()
        holder.wait()
        standby_owner = standby.owner()
        wait_until(lambda: Lease.objects.get().owner == standby_owner, timeout=TTL + INTERVAL + 10, interval=0.2)
        takeover = Lease.objects.get().acquired_at.timestamp() - killed_at
        assert TTL - HEARTBEAT - 1.0 <= takeover <= TTL + INTERVAL + 1.5, takeover
        standby.wait_for_output("Recovered 1 action(s)")
        wait_until(lambda: Action.objects.get(pk=action.pk).claimed_by == standby_owner)
        assert Action.objects.get(pk=action.pk).attempts == 2
    finally:
        holder.stop()
        if standby is not None:
            standby.stop()
