"""Hides psycopg 3 from a benchmark process, so that Django falls back to psycopg2.

Django's PostgreSQL backend imports ``psycopg`` and, if that fails, ``psycopg2``
(django/db/backends/postgresql/psycopg_any.py); it has no setting that picks the driver. The
benchmark's environment has both, so ``django_env(..., driver="psycopg2")`` puts this folder first
on PYTHONPATH: the AOL then runs as it does in the app's own environment (requirements.txt has
only psycopg2-binary), which is what users install.
"""

raise ImportError("psycopg 3 is hidden from this benchmark process (bench/drivers/psycopg2_only)")
