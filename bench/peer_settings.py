"""Settings for the peers (django-tasks-db, Procrastinate): the app's settings plus their apps."""

from aicmo_site.settings import *  # noqa: F403
from aicmo_site.settings import INSTALLED_APPS

INSTALLED_APPS = [
    *INSTALLED_APPS,
    "django_tasks",
    "django_tasks_db",
    "procrastinate.contrib.django",
    "bench.peerjobs",
]

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
