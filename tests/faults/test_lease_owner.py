"""Two daemons with the same hostname and the same pid, as in two containers on one host: one holds the
lease, the other waits (real daemon processes, each PID 1 of its own PID namespace)."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration.models import Lease, TickLedger
from tests.conftest import FAST_DAEMON_ENV, ROOT, DaemonProcess

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

TTL = float(FAST_DAEMON_ENV["AOL_LEASE_TTL_SECONDS"])
#: The hostname both daemons get in their own UTS namespace.
HOSTNAME = "aol-twin"
NAMESPACES = ["--pid", "--fork", "--kill-child", "--mount-proc", "--uts"]


def unshare_prefix() -> list[str]:
    """The ``unshare`` command line that starts a process as PID 1 with its own hostname.

    As root plain ``unshare`` does it; elsewhere a user namespace may be allowed instead. Where the
    kernel refuses both, the test is skipped: there is no way to give two processes one pid.
    """
    if shutil.which("unshare") is None:
        pytest.skip("no unshare (util-linux) here, so no PID namespaces to start two daemons as PID 1")
    errors = []
    for prefix in (["unshare", *NAMESPACES], ["unshare", "--user", "--map-root-user", *NAMESPACES]):
        result = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            return prefix
        errors.append(result.stderr.strip() or f"exit {result.returncode}")
    pytest.skip(f"the kernel refuses new PID/UTS namespaces here: {'; '.join(errors)}")


class NamespacedDaemon(DaemonProcess):
    """``run_aol_daemon`` as PID 1 of a new PID namespace, with the hostname ``HOSTNAME``.

    ``--kill-child`` ends the namespace when ``unshare`` is killed, so ``stop()`` leaves nothing behind.
    """

    def __init__(self, prefix: list[str], args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115  (closed in stop())
        command = [sys.executable, "manage.py", "run_aol_daemon", *args]
        self.proc = subprocess.Popen(
            [*prefix, "sh", "-c", 'hostname "$0" && exec "$@"', HOSTNAME, *command],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )


def test_lease__two_daemons_with_the_same_hostname_and_pid__the_second_waits_and_the_token_holds(daemon_env, tmp_path):
    """Invariant: a second daemon whose hostname and pid equal the holder's does not take the live lease:
    a standby waits ("held by"), a plain one exits 3; the token does not change and the holder keeps
    ticking alone."""
    prefix = unshare_prefix()
    started: list[DaemonProcess] = []

    def start(*args: str) -> DaemonProcess:
        process = NamespacedDaemon(prefix, list(args), daemon_env, tmp_path / f"twin-{len(started)}.log")
        started.append(process)
        return process

    try:
        holder = start("--proof")
        holder.wait_for_output("Lease acquired")
        lease = Lease.objects.get()
        assert lease.owner == holder.owner() and lease.owner.startswith(f"{HOSTNAME}:1:"), lease.owner

        standby = start("--proof", "--standby")
        assert standby.owner().startswith(f"{HOSTNAME}:1:") and standby.owner() != lease.owner
        standby.wait_for_output(f"Standby: lease held by {lease.owner} until")
        plain = start("--proof", "--ticks", "1")
        assert plain.wait(timeout=30) == 3, plain.output()
        assert f"Lease held by {lease.owner} until" in plain.output()

        watch_until = time.monotonic() + 3 * TTL
        while time.monotonic() < watch_until:
            assert Lease.objects.values_list("owner", "token").get() == (lease.owner, lease.token)
            time.sleep(0.1)
        assert holder.proc.poll() is None and standby.proc.poll() is None
        assert "Lost the lease" not in holder.output() + standby.output()
        assert set(TickLedger.objects.values_list("owner", "lease_token")) == {(lease.owner, lease.token)}
    finally:
        for process in started:
            process.stop()
