"""The database backend used when DATABASE_URL cannot be used (see aicmo_site/settings.py).

Settings still load, so ``manage.py check`` and ``check_sentinels`` can say what is wrong, and the
health endpoints and the diagnostics page can answer. Anything that touches the database raises
ImproperlyConfigured naming the problem (Django's own dummy backend would blame a missing ENGINE).
"""

from typing import Any, NoReturn

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.dummy import base as dummy


def complain(*args: Any, **kwargs: Any) -> NoReturn:
    issues = " ".join(getattr(settings, "DATABASE_URL_ISSUES", None) or ["it could not be parsed."])
    raise ImproperlyConfigured(
        f"DATABASE_URL cannot be used: {issues} Run python manage.py check_sentinels for details."
    )


class DatabaseOperations(dummy.DatabaseOperations):
    quote_name = complain


class DatabaseClient(dummy.DatabaseClient):
    runshell = complain


class DatabaseIntrospection(dummy.DatabaseIntrospection):
    get_table_list = complain
    get_table_description = complain
    get_relations = complain
    get_indexes = complain


class DatabaseWrapper(dummy.DatabaseWrapper):
    vendor = "unusable"
    display_name = "unusable DATABASE_URL"
    _cursor = complain
    ensure_connection = complain
    _commit = complain
    _savepoint_commit = complain
    _set_autocommit = complain
    client_class = DatabaseClient
    introspection_class = DatabaseIntrospection
    ops_class = DatabaseOperations
