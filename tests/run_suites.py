"""The whole test suite: once on SQLite, once on PostgreSQL (``make test``).

PostgreSQL is taken from AICMO_TEST_POSTGRES_URL (default: the local server,
postgres://postgres@127.0.0.1:5432/postgres); Django's test runner creates a fresh test_<name>
database there. When that server cannot be reached the PostgreSQL half is skipped with a
message, except under CI=true, where that is a failure. Extra arguments go to pytest.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
OUTPUT = ROOT / "test-output"


def masked(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def postgres_reachable(url: str) -> str:
    """'' when a connection works, else the reason."""
    try:
        import psycopg2
    except ImportError as exc:
        return f"psycopg2 is not installed ({exc})"
    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.Error as exc:
        return str(exc).strip().splitlines()[0]
    return ""


def run_pytest(label: str, database_url: str, args: list[str]) -> int:
    OUTPUT.mkdir(exist_ok=True)
    env = {**os.environ, "DATABASE_URL": database_url, "AICMO_TEST_DB_LABEL": label}
    command = [sys.executable, "-m", "pytest", f"--junitxml={OUTPUT / f'junit-{label}.xml'}", *args]
    print(f"\n=== Test suite on {label}: {masked(database_url)} ===", flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


def main(args: list[str]) -> int:
    results = {"sqlite": run_pytest("sqlite", f"sqlite:///{ROOT / 'var' / 'pytest.sqlite3'}", args)}
    pg_url = os.environ.get("AICMO_TEST_POSTGRES_URL") or DEFAULT_PG_URL
    problem = postgres_reachable(pg_url)
    if problem:
        print(f"\n=== PostgreSQL half SKIPPED: cannot reach {masked(pg_url)}: {problem} ===")
        if os.environ.get("CI"):
            print("CI=true: the PostgreSQL half must run. Failing.")
            results["postgres"] = 1
    else:
        results["postgres"] = run_pytest("postgres", pg_url, args)
    print(
        "\n=== Summary: " + ", ".join(f"{k}: {'passed' if v == 0 else 'FAILED'}" for k, v in results.items()) + " ==="
    )
    return 0 if all(code == 0 for code in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
