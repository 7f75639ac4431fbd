"""The database's clock: the one "now" that decides claims, expiries and firings.

Daemons, the console and the CLI may run on hosts whose clocks disagree; the database is the
clock they all share. ``DbNow()`` is that clock inside a statement and ``db_now()`` reads it.
Use them, not ``timezone.now()`` or Django's ``Now()``, for any time that is compared with times
other processes wrote.

On SQLite the database is a file and its clock is the clock of the process running the
statement: all processes must share one host (and clock) there.
"""

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import Now  # noqa: TID251  (the one place that extends it)
from django.db.models.sql import Query
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone
from django.utils.dateparse import parse_datetime

if TYPE_CHECKING:
    from django.db.models.sql.compiler import _AsSqlType

#: SQLite's current time in the text form Django stores datetimes in (six fractional digits).
SQLITE_NOW = "STRFTIME('%Y-%m-%d %H:%M:%f000', 'NOW')"


class DbNow(Now):
    """Django's ``Now()``, except that on SQLite it is written like a stored datetime.

    SQLite keeps datetimes as text and compares them as text. Django stores six fractional digits
    (``…:11.123000``) while its ``Now()`` gives SQLite's three (``…:11.123``; the clock counts
    milliseconds), and ``'…:11.123000' <= '…:11.123'`` is false: a time read from the clock, or
    computed from it, compared as later than the clock for the rest of that millisecond, so an
    action due at that instant was not claimed. Padding to six digits gives both the same form.
    """

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any) -> "_AsSqlType":
        # as_sql() %-formats the template, then the SQL is %-formatted again with its parameters.
        template = SQLITE_NOW.replace("%", "%%%%")
        return self.as_sql(compiler, connection, template=template, **extra_context)


def db_now(*, using: str = DEFAULT_DB_ALIAS) -> datetime:
    """The database's current time (aware, UTC): one ``SELECT`` of ``DbNow()``."""
    connection = connections[using]
    sql, params = Query(None).get_compiler(using=using).compile(DbNow())
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        (value,) = cursor.fetchone()
    if isinstance(value, str):  # SQLite returns the text it computed
        value = parse_datetime(value)
    return timezone.make_aware(value, UTC) if timezone.is_naive(value) else value
