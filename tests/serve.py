"""Serve the project's WSGI application like a production server does: no start-up checks.

``manage.py runserver`` refuses to start while the database is down (its migration check needs
it); gunicorn and friends do not check, and neither does this. Usage: python -m tests.serve PORT
"""

import sys

from django.core.servers.basehttp import run

if __name__ == "__main__":
    from aicmo_site.wsgi import application

    run("127.0.0.1", int(sys.argv[1]), application, threading=True)
