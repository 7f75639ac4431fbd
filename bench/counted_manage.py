"""``manage.py`` with a count of database work, written as JSON to $BENCH_COUNTS_FILE at exit.

Counts every statement Django sends (an execute wrapper on every connection, so the daemon's
loop and its watchdog thread alike), every COMMIT and ROLLBACK, and every new connection. Each
transaction also costs a BEGIN round trip: psycopg sends it before the first statement, and
Django's SQLite backend sends BEGIN IMMEDIATE itself (so there it is counted as a statement).
The wrapper adds well under a microsecond per statement; the timed drains run plain manage.py.
"""

import json
import os
import re
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COUNTS = {
    "statements": 0,
    "commits": 0,
    "rollbacks": 0,
    "connections": 0,
    "statements_by_thread": {},
    "statements_by_kind": {},
}
_lock = threading.Lock()
_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', re.IGNORECASE)


def _bump(name: str) -> None:
    with _lock:
        COUNTS[name] += 1


def _count_statement(execute, sql, params, many, context):
    with _lock:
        COUNTS["statements"] += 1
        by_thread = COUNTS["statements_by_thread"]
        name = threading.current_thread().name
        by_thread[name] = by_thread.get(name, 0) + 1
        table = _TABLE.search(sql)
        kind = f"{sql.split(maxsplit=1)[0].upper()} {table.group(1) if table else ''}".strip()
        by_kind = COUNTS["statements_by_kind"]
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return execute(sql, params, many, context)


def install() -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.signals import connection_created

    def on_connection(sender, connection, **kwargs):
        _bump("connections")
        # The same wrapper object reconnects (CONN_MAX_AGE=0): wrap it once.
        if _count_statement not in connection.execute_wrappers:
            connection.execute_wrappers.append(_count_statement)

    connection_created.connect(on_connection, weak=False)
    commit, rollback = BaseDatabaseWrapper._commit, BaseDatabaseWrapper._rollback

    def counted_commit(self):
        _bump("commits")
        return commit(self)

    def counted_rollback(self):
        _bump("rollbacks")
        return rollback(self)

    BaseDatabaseWrapper._commit = counted_commit
    BaseDatabaseWrapper._rollback = counted_rollback


def _dump() -> None:
    with _lock:
        text = json.dumps(COUNTS)
    path = Path(os.environ["BENCH_COUNTS_FILE"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _dump_every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        _dump()


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicmo_site.settings")
    import django
    from django.core.management import execute_from_command_line

    django.setup()
    install()
    if os.environ.get("BENCH_COUNTS_EVERY"):
        # For long runs read while they go (the idle scenario): rewrite the file every few seconds.
        threading.Thread(target=_dump_every, args=(float(os.environ["BENCH_COUNTS_EVERY"]),), daemon=True).start()
    try:
        execute_from_command_line(["manage.py", *sys.argv[1:]])
    finally:
        _dump()


if __name__ == "__main__":
    main()
