"""PostgreSQL restarted under a running daemon, on a private throwaway cluster."""

import os
import re
import time

import pytest

from tests.conftest import DaemonProcess, wait_until
from tests.fake_adapters import FAKE_ADAPTERS

# The private cluster does not depend on the suite's database, so once per run is enough: in the
# PostgreSQL half (deselected in the SQLite half, so that the cluster is not even created there).
pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

#: The issue's "1,000 queued actions".
ACTIONS = 1000


def daemon_on(cluster, tmp_path, artifacts_dir, *args: str, name: str) -> DaemonProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOL_")}
    env.update(
        {
            "DATABASE_URL": cluster.url,
            "AOL_ARTIFACTS_DIR": str(artifacts_dir),
            "AOL_EXTRA_ADAPTERS": ",".join(FAKE_ADAPTERS),
            "AOL_TICK_INTERVAL_SECONDS": "0.05",
            "AOL_HEARTBEAT_SECONDS": "0.3",
            "AOL_LEASE_TTL_SECONDS": "3",
            "AOL_CONTROL_POLL_SECONDS": "0.1",
            "AOL_RETRY_BACKOFF_SECONDS": "0.1",
            "AOL_MAX_ACTIONS_PER_TICK": "25",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return DaemonProcess(list(args), env, tmp_path / f"{name}.log")


def count(cluster, status: str) -> int:
    return cluster.query("SELECT count(*) FROM aol_actions WHERE status = %s", (status,))[0][0]


def test_postgres_restart__under_load_of_1000_actions__daemon_reconnects_all_succeed_exactly_once(
    private_postgres, tmp_path, artifacts_dir
):
    """Invariant: PostgreSQL restarted while a daemon drains 1,000 queued actions: the daemon logs the error
    (never the password), keeps its process, reconnects and resumes; all 1,000 actions end SUCCESS with
    exactly one success log and one artifact each; nothing is left RUNNING."""
    cluster = private_postgres
    cluster.manage(
        "shell",
        "-c",
        "from orchestration.services.queue import action_enqueue\n"
        f"for i in range({ACTIONS}):\n"
        "    action_enqueue(action_type='SLEEP', payload={'seconds': 0}, idempotency_key=f'pg-{i}')",
    )
    daemon = daemon_on(cluster, tmp_path, artifacts_dir, "--proof", name="daemon")
    try:
        wait_until(lambda: count(cluster, "SUCCESS") >= ACTIONS // 5, timeout=60, message="a fifth done")
        cluster.restart()
        wait_until(lambda: count(cluster, "SUCCESS") == ACTIONS, timeout=120, interval=0.5, message="all done")
        time.sleep(0.5)
        assert daemon.proc.poll() is None, daemon.output()
        out = daemon.output()
    finally:
        daemon.stop()

    assert "database error" in out  # the restart really hit the daemon
    assert cluster.password not in out
    assert count(cluster, "RUNNING") == 0
    per_action = cluster.query(
        "SELECT a.id, count(l.id) FROM aol_actions a LEFT JOIN aol_execution_logs l"
        " ON l.action_id = a.id AND l.level = 'INFO' GROUP BY a.id"
    )
    assert len(per_action) == ACTIONS
    assert {n for _, n in per_action} == {1}, [row for row in per_action if row[1] != 1][:10]
    files = [p for p in (artifacts_dir / "sleep").iterdir() if not p.name.startswith(".")]
    assert len(files) == ACTIONS
    tokens = cluster.query("SELECT token FROM aol_lease")[0][0]
    assert tokens >= 2  # a new lease tenure began after the reconnect
    assert re.search(r"Lease acquired: token [2-9]", out)


def test_startup__database_down__standby_daemon_waits_and_starts_when_it_comes_up(
    private_postgres, tmp_path, artifacts_dir
):
    """Invariant: a --standby daemon started while PostgreSQL is down logs the masked URL and waits, in its
    process, then starts working once the server is up; without --standby it exits 1 with a clear message."""
    cluster = private_postgres
    cluster.stop()
    try:
        plain = daemon_on(cluster, tmp_path, artifacts_dir, "--proof", name="plain")
        assert plain.wait(timeout=30) == 1
        assert "Cannot reach the database" in plain.output() and cluster.password not in plain.output()
        standby = daemon_on(cluster, tmp_path, artifacts_dir, "--proof", "--standby", name="standby")
        standby.wait_for_output("Standby: retrying in")
    finally:
        cluster.start()
    try:
        standby.wait_for_output("Lease acquired", timeout=30)
        assert cluster.password not in standby.output()
        assert "***" in standby.output()
    finally:
        standby.stop()
        plain.stop()
