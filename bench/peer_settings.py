"""Settings for the peers (django-tasks-db, Procrastinate): the app's settings plus their apps.

Each peer gets its best documented setting for one worker process:

- django-tasks-db: persistent database connections. Its ``db_worker`` calls Django's
  ``close_old_connections()`` before and after every task ("emulate Django's request behaviour"),
  which under Django's default ``CONN_MAX_AGE = 0`` closes the connection each time, so every task
  would open a new PostgreSQL connection. Django's documentation ("Persistent connections",
  docs/ref/databases.txt) says to set CONN_MAX_AGE to a positive number of seconds, or None for
  unlimited persistent connections; a long-running worker process is the case it is for.
- Procrastinate: its worker does not use Django's connection at all; ``get_worker_connector()``
  builds its own psycopg 3 async connector from these settings, so CONN_MAX_AGE does not touch it.
"""

from aicmo_site.settings import *  # noqa: F403
from aicmo_site.settings import DATABASES, INSTALLED_APPS

INSTALLED_APPS = [
    *INSTALLED_APPS,
    "django_tasks",
    "django_tasks_db",
    "procrastinate.contrib.django",
    "bench.peerjobs",
]

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

DATABASES["default"]["CONN_MAX_AGE"] = None  # unlimited persistent connections (see above)
