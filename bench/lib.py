"""Helpers shared by the benchmark harness (run.py) and its in-process jobs (jobs.py)."""

import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VAR = BENCH / "var"
PYTHON = sys.executable


def median(values: list[float]) -> float:
    """The median, NaN for no values (NaN samples, a failed run, are left out)."""
    return percentile([v for v in values if not math.isnan(v)], 50)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def steady_rate(done_at: list[float]) -> float:
    """Jobs per second over the middle 80 % of completions (leaves out start-up and the tail)."""
    if len(done_at) < 10:
        return math.nan
    ordered = sorted(done_at)
    first, last = ordered[len(ordered) // 10], ordered[len(ordered) * 9 // 10 - 1]
    jobs = len(ordered) * 9 // 10 - 1 - len(ordered) // 10
    return jobs / (last - first) if last > first else math.nan


def aol_payload(number: int) -> dict:
    """A POST_SOCIAL payload whose PROOF artifact is about 220 bytes, like the peers' job."""
    return {"platform": "twitter", "message": f"Benchmark post {number:06d}"}


def to_epoch(value) -> float:
    """A database timestamp (datetime, or SQLite's text) as seconds since the epoch."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value).replace(" ", "T"))
    if value.tzinfo is None:  # Django stores UTC without an offset in SQLite
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class Database:
    """A small client for one benchmark database, PostgreSQL (psycopg 3) or SQLite, in autocommit."""

    def __init__(self, url: str):
        self.url = url
        self.sqlite = url.startswith("sqlite:")
        self._conn = None

    def connect(self):
        if self._conn is None:
            if self.sqlite:
                self._conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
            else:
                import psycopg

                self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def rows(self, sql: str, params=()) -> list[tuple]:
        conn = self.connect()
        if self.sqlite:
            sql = sql.replace("%s", "?")
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []

    def scalar(self, sql: str, params=()):
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def execute(self, sql: str, params=()) -> None:
        self.rows(sql, params)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


#: The PostgreSQL drivers a Django process can be given: Django prefers psycopg 3 when it is installed.
DRIVERS = ("psycopg", "psycopg2")


def django_env(
    database_url: str,
    *,
    artifacts: Path,
    settings: str = "aicmo_site.settings",
    driver: str = "psycopg",
    **extra: str,
) -> dict:
    """The environment of a Django subprocess on ``database_url`` (no AOL_* from the caller's shell).

    ``driver="psycopg2"`` hides psycopg 3 from the process (bench/drivers/psycopg2_only), so that
    Django uses psycopg2, as in the app's own environment.
    """
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}; choose from {', '.join(DRIVERS)}")
    path = str(ROOT) if driver == "psycopg" else f"{BENCH / 'drivers' / 'psycopg2_only'}{os.pathsep}{ROOT}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOL_") and k != "DATABASE_URL"}
    env.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": settings,
            "AOL_ARTIFACTS_DIR": str(artifacts),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": path,
            "SECRET_KEY": "bench-only-not-a-secret",
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        }
    )
    env.update(extra)
    return env


def log_path(name: str) -> Path:
    (VAR / "logs").mkdir(parents=True, exist_ok=True)
    return VAR / "logs" / f"{name}.log"


def manage(args: list[str], env: dict, *, log: str, timeout: float = 600) -> None:
    """Run ``manage.py args`` to completion; its output goes to bench/var/logs/<log>.log."""
    with open(log_path(log), "a") as out:
        code = subprocess.call(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    if code != 0:
        raise RuntimeError(f"manage.py {' '.join(args[:2])} failed ({code}); see {log_path(log)}")


def start(args: list[str], env: dict, *, log: str) -> subprocess.Popen:
    """Start ``python args`` in the background; output to bench/var/logs/<log>.log."""
    out = open(log_path(log), "w")  # noqa: SIM115  (inherited by the child; closed with the process)
    process = subprocess.Popen([PYTHON, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return process


def job(name: str, env: dict, *args: str, timeout: float = 1800) -> dict:
    """Run ``python -m bench.jobs name args`` and return the JSON it prints last."""
    with open(log_path(f"job-{name}"), "a") as err:
        result = subprocess.run(
            [PYTHON, "-m", "bench.jobs", name, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=timeout,
        )
    if result.returncode != 0:
        raise RuntimeError(f"job {name} failed ({result.returncode}); see {log_path(f'job-{name}')}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def wait_for(predicate, *, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:g}s")
