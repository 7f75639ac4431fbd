"""PostgreSQL restarted under a running daemon, on a private throwaway cluster."""

import os
import re
import time

import pytest

from tests.conftest import DaemonProcess, wait_until
from tests.fake_adapters import FAKE_ADAPTERS
from tests.faults.conftest import both_stores

# The private cluster does not depend on the suite's database, so once per run is enough: in the
# PostgreSQL half (deselected in the SQLite half, so that the cluster is not even created there).
pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

#: The issue's "1,000 queued actions".
ACTIONS = 1000


def daemon_on(cluster, tmp_path, artifacts_dir, *args: str, name: str, store: str = "files") -> DaemonProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOL_")}
    env.update(
        {
            "DATABASE_URL": cluster.url,
            "AOL_ARTIFACTS_DIR": str(artifacts_dir),
            "AOL_ARTIFACT_STORE": store,
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


@both_stores
def test_postgres_restart__under_load_of_1000_actions__daemon_reconnects_all_succeed_exactly_once(
    private_postgres, tmp_path, artifacts_dir, artifact_store
):
    """Invariant: PostgreSQL restarted while a daemon drains 1,000 queued actions: the daemon logs the error
    (never the password), keeps its process, reconnects and resumes; all 1,000 actions end SUCCESS with
    exactly one success log and one artifact each; nothing is left RUNNING."""
    cluster = private_postgres
    # The database store drains several times faster (no file and fsync per action): its actions sleep
    # 10 ms so that the daemon is still mid-drain when PostgreSQL restarts.
    seconds = 0 if artifact_store == "files" else 0.01
    # The cluster serves the whole module: start from an empty queue and a lease never taken.
    cluster.manage(
        "shell",
        "-c",
        "from orchestration.models import Action, Artifact, ExecutionLog, Lease, TickLedger\n"
        "for model in (Action, Artifact, ExecutionLog, TickLedger):\n"
        "    model.objects.all().delete()\n"
        "Lease.objects.update(owner='', token=0, acquired_at=None, renewed_at=None, expires_at=None)",
    )
    cluster.manage(
        "shell",
        "-c",
        "from orchestration.services.enqueue import action_enqueue\n"
        f"for i in range({ACTIONS}):\n"
        f"    action_enqueue(action_type='SLEEP', payload={{'seconds': {seconds}}}, idempotency_key=f'pg-{{i}}')",
    )
    daemon = daemon_on(cluster, tmp_path, artifacts_dir, "--proof", name="daemon", store=artifact_store)
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
    if artifact_store == "files":
        files = [p for p in (artifacts_dir / "sleep").iterdir() if not p.name.startswith(".")]
        assert len(files) == ACTIONS
    else:  # one row per action, each named by exactly one success log, and no file
        assert not (artifacts_dir / "sleep").exists()
        linked = cluster.query(
            "SELECT count(*), count(DISTINCT l.action_id) FROM aol_artifacts x JOIN aol_execution_logs l"
            " ON l.artifact_ref = 'db:sha256:' || x.sha256 AND l.level = 'INFO'"
        )[0]
        assert cluster.query("SELECT count(*) FROM aol_artifacts")[0][0] == ACTIONS
        assert linked == (ACTIONS, ACTIONS)
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


#: What PostgreSQL logs for each connection refused while a database does not allow connections.
REFUSED = "is not currently accepting connections"
#: How long the database refuses the daemon, as in the fault-injection run that saw 943 FAIL lines.
OUTAGE_SECONDS = 10


def cluster_admin(cluster, sql: str) -> None:
    """Run ``sql`` on the cluster's maintenance database (it works while ``aol`` refuses connections)."""
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1", port=cluster.port, user="postgres", password=cluster.password, dbname="postgres",
        connect_timeout=5,
    )  # fmt: skip
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


def test_database_outage__daemon_at_a_10ms_interval__backs_off_logs_once_and_records_one_ledger_row(
    private_postgres, tmp_path, artifacts_dir
):
    """Invariant: while its database refuses connections, a daemon run with ``--interval 0.01`` backs off
    (about 1, 2, 4, 8 s) instead of retrying every tick: a bounded number of connection attempts, one FAIL
    line when the outage starts, no line per retry, and one FAIL row in the ledger saying how long it lasted
    once the database is back; then it works again by itself."""
    cluster = private_postgres
    wait_until(  # a daemon of an earlier test in this module was killed with the lease held
        lambda: cluster.query("SELECT count(*) FROM aol_lease WHERE owner <> '' AND expires_at > now()") == [(0,)],
        timeout=30,
        message="no live lease",
    )
    daemon = daemon_on(cluster, tmp_path, artifacts_dir, "--proof", "--interval", "0.01", name="outage")
    server_log = cluster.root / "log"
    try:
        daemon.wait_for_output("Lease acquired", timeout=30)
        time.sleep(0.5)
        refused_before, output_before = server_log.read_text().count(REFUSED), len(daemon.output())
        last_tick = cluster.query("SELECT max(id) FROM aol_tick_ledger")[0][0]
        try:
            cluster_admin(cluster, "ALTER DATABASE aol ALLOW_CONNECTIONS false")
            cluster_admin(cluster, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'aol'")
            time.sleep(OUTAGE_SECONDS)
            refused = server_log.read_text().count(REFUSED) - refused_before
            during = daemon.output()[output_before:]
        finally:
            cluster_admin(cluster, "ALTER DATABASE aol ALLOW_CONNECTIONS true")
        daemon.wait_for_output("Database available again", timeout=30)
        cluster.manage(
            "shell",
            "-c",
            "from orchestration.services.enqueue import action_enqueue\n"
            "action_enqueue(action_type='SLEEP', payload={'seconds': 0}, idempotency_key='after-outage')",
        )
        wait_until(
            lambda: (
                cluster.query("SELECT status FROM aol_actions WHERE idempotency_key = 'after-outage'") == [("SUCCESS",)]
            ),
            timeout=30,
            message="an action enqueued after the outage runs",
        )
        assert daemon.proc.poll() is None, daemon.output()
    finally:
        daemon.stop()

    # Retrying every tick made about 1,000 attempts in 10 s. Now: the loop's backoff (1 + 2 + 4 s: at most
    # 4 attempts), the wake-up listener's reconnect every 2 s (at most 6), and the watchdog, which leaves
    # the database alone while the loop backs off (at most 2 before the loop noticed).
    assert 1 <= refused <= 12, (refused, during)
    assert during.count("FAIL | database error") == 1, during
    assert during.count("tick=") <= 1, during  # the loop's error log: once, not per retry
    assert cluster.password not in daemon.output()
    rows = cluster.query("SELECT notes FROM aol_tick_ledger WHERE id > %s AND status = 'FAIL'", (last_tick,))
    assert len(rows) == 1 and rows[0][0].startswith("database unavailable for "), rows
    failed = int(re.search(r"\((\d+) failed attempt", rows[0][0]).group(1))
    assert 1 <= failed <= 6, rows
