"""Fixtures of the fault suite: fake adapters in daemons, gated starts, a private PostgreSQL cluster."""

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from orchestration.adapters.artifacts import sha256_bytes
from orchestration.adapters.store import DATABASE, FILES, artifact_read, db_ref
from orchestration.models import Action, ActionStatus, Artifact, ExecutionLog
from tests.conftest import ROOT, DaemonProcess
from tests.fake_adapters import FAKE_ADAPTERS

LAUNCHER = Path(__file__).with_name("launch_at.py")


@pytest.fixture(autouse=True)
def fake_adapters(settings):
    """The fake adapters (HANG, CRASH, …) are known to this process and to every daemon started."""
    settings.AOL_EXTRA_ADAPTERS = FAKE_ADAPTERS


#: The fault tests that involve artifacts run once per store: ``@both_stores`` on the test. The database
#: store's runs are PostgreSQL's: that store exists for several hosts sharing one database, which
#: SQLite (one file on one host) never is; its SQLite behaviour is covered by the adapter and service
#: tests, and by tests/faults/test_failover_hosts.py on both databases.
ARTIFACT_STORES = (FILES, pytest.param(DATABASE, marks=pytest.mark.postgres_only))
both_stores = pytest.mark.parametrize("artifact_store", ARTIFACT_STORES, indirect=True)
#: The longer failover and recovery drills run once per database, each with one store: files on SQLite,
#: the database store on PostgreSQL (the other fault tests run with files on both databases).
one_store_per_database = pytest.mark.parametrize(
    "artifact_store",
    (pytest.param(FILES, marks=pytest.mark.sqlite_only), pytest.param(DATABASE, marks=pytest.mark.postgres_only)),
    indirect=True,
)


@pytest.fixture
def artifact_store(request, settings) -> str:
    """The store this test's daemons (and this process) write artifacts to: files unless ``@both_stores``."""
    store = getattr(request, "param", FILES)
    settings.AOL_ARTIFACT_STORE = store
    return store


@pytest.fixture
def daemon_env(daemon_env, artifact_store):
    return {**daemon_env, "AOL_EXTRA_ADAPTERS": ",".join(FAKE_ADAPTERS), "AOL_ARTIFACT_STORE": artifact_store}


class GatedProcess(DaemonProcess):
    """A process that sets Django up once, then runs a command ``times`` times, at ``at + k * every``."""

    def __init__(
        self, command: str, args: list[str], env: dict[str, str], log_path: Path, *, at: float, every: float, times: int
    ):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), repr(at), repr(every), str(times), command, *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def start_daemons_together(daemon_env, tmp_path):
    """``start_daemons_together(3, "--proof", at=t, every=1.0, times=20)``: processes whose daemon runs
    (or runs of another ``command``) begin at the same instants."""
    started: list[DaemonProcess] = []

    def start(
        count: int,
        *args: str,
        at: float,
        every: float = 1.0,
        times: int = 1,
        env: dict[str, str] | None = None,
        command: str = "run_aol_daemon",
    ) -> list[DaemonProcess]:
        batch = []
        for _ in range(count):
            log = tmp_path / f"gated-{len(started)}.log"
            process_env = {**daemon_env, **(env or {})}
            process = GatedProcess(command, list(args), process_env, log, at=at, every=every, times=times)
            started.append(process)
            batch.append(process)
        return batch

    yield start
    for process in started:
        process.stop()


# --- reading the outcome from the database and the artifacts ------------------------------------


def success_logs(action: Action) -> list[ExecutionLog]:
    """The execution-log rows recording a success of ``action`` (failures, recoveries and
    interruptions are logged as WARNING or ERROR)."""
    return list(ExecutionLog.objects.filter(action_id=action.pk, level="INFO").order_by("id"))


def artifact_files(artifacts_dir: Path, folder: str) -> list[Path]:
    base = artifacts_dir / folder
    return sorted(path for path in base.iterdir() if not path.name.startswith(".")) if base.exists() else []


def stored_artifacts(artifacts_dir: Path, folder: str) -> list[str]:
    """The references of the artifacts stored under ``folder`` (``sleep``, ``crash`` …) in the current store.

    Files: the files in that folder. Database: the rows first written under that folder's names;
    and then no file may exist there at all.
    """
    from django.conf import settings

    if settings.AOL_ARTIFACT_STORE == DATABASE:
        assert artifact_files(artifacts_dir, folder) == [], "the database store wrote a file"
        hashes = Artifact.objects.filter(name__startswith=f"{folder}/").values_list("sha256", flat=True)
        return sorted(db_ref(digest) for digest in hashes)
    return sorted(path.relative_to(artifacts_dir).as_posix() for path in artifact_files(artifacts_dir, folder))


def stored_sha256(ref: str) -> str:
    """The SHA-256 of the stored artifact ``ref``, read from the store the reference names."""
    return sha256_bytes(artifact_read(ref=ref))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_nothing_running() -> None:
    running = list(Action.objects.filter(status=ActionStatus.RUNNING).values_list("pk", "action_type"))
    assert running == [], f"actions left RUNNING: {running}"


def wait_for_exit(process: DaemonProcess, timeout: float) -> tuple[int, float]:
    """Wait for the process to end; returns (exit code, wall time it was seen ending)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.proc.poll()
        if code is not None:
            return code, time.time()
        time.sleep(0.01)
    raise AssertionError(f"daemon still running after {timeout}s; output:\n{process.output()}")


# --- a private PostgreSQL cluster -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivateCluster:
    """A throwaway PostgreSQL cluster in a temporary directory, on its own port, with a password.

    It exists so that a test can restart PostgreSQL under a running daemon without touching the
    machine's shared cluster, which other test runs use at the same time.
    """

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="aol-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.password = secrets.token_hex(12)
        # initdb refuses to run as root: run the server tools as the postgres user.
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.url = f"postgres://postgres:{self.password}@127.0.0.1:{self.port}/aol"

    def _tool(self, name: str, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [*self.run_as, str(self.bindir / name), *args], capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed ({result.returncode}): {result.stdout}\n{result.stderr}")

    def create(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.run_as:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self._tool(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.start()
        env = {**os.environ, "PGPASSWORD": self.password}
        subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "aol"],
            check=True,
            env=env,
            capture_output=True,
        )

    def _options(self) -> str:
        # fsync off: a throwaway cluster; a fast restart still shuts down cleanly.
        return f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"

    def start(self) -> None:
        self._tool("pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.root / "log"), "-w", "start")

    def restart(self) -> None:
        self._tool(
            "pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.root / "log"), "-m", "fast",
            "-w", "restart",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._tool("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run a manage.py command against this cluster; returns its output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AOL_")}
        env.update({"DATABASE_URL": self.url, "DJANGO_SETTINGS_MODULE": "aicmo_site.settings"})
        env["AOL_EXTRA_ADAPTERS"] = ",".join(FAKE_ADAPTERS)
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stdout}\n{result.stderr}")
        return result.stdout

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", password=self.password, dbname="aol", connect_timeout=5
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def private_postgres():
    """A migrated private PostgreSQL cluster for this module; always stopped and deleted afterwards."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = PrivateCluster(bindir)
    try:
        cluster.create()
        cluster.manage("migrate", "--noinput")
        yield cluster
    finally:
        cluster.destroy()
