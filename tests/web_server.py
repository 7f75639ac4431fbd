"""Real web servers for tests (gunicorn serving the WSGI application), and a database that can go away.

``start_web_server`` runs gunicorn with the production settings file, deploy/gunicorn.conf.py (only
the address, the worker count and the environment differ), so what the tests see is what a deployment
serves: no start-up checks (gunicorn, unlike ``manage.py runserver``, starts with the database down),
static files through whitenoise, keep-alive through the gthread workers.

``database_switch`` gives a DATABASE_URL for a subprocess whose database the test can take down and
bring back without touching the machine's PostgreSQL: on PostgreSQL the URL goes through a TCP proxy
the test starts and stops; on SQLite it names a copy of the test database that the test moves away
and back.
"""

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import ROOT

GUNICORN_CONFIG = ROOT / "deploy" / "gunicorn.conf.py"
#: How long a server may take to answer its first /healthz (imports Django and the project).
START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer:
    """gunicorn on a free port with deploy/gunicorn.conf.py, its output collected to a file.

    Ready when ``/healthz`` answers 200 (a worker has loaded the application), not merely when the
    port listens: gunicorn's master binds the port before any worker can answer.
    """

    def __init__(self, env: dict[str, str], log_path: Path, *, workers: int = 1, threads: int = 8):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(GUNICORN_CONFIG),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:  # refused before the bind, reset or timed out while a worker boots
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the server did not answer /healthz within {START_TIMEOUT_SECONDS}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text()

    def request(self, path: str, *, headers: dict[str, str] | None = None, data: bytes | None = None):
        """(status, body text, headers) for one request; HTTP errors are returned, not raised."""
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers or {})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=30) as response:
                return response.status, response.read().decode(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), exc.headers

    def stop(self) -> None:
        """SIGTERM, as systemctl stop sends: gunicorn finishes requests in flight and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not self._log.closed:
            self._log.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def web_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AOL_", "OPENAI_", "AICMO_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "aicmo_site.settings",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


@pytest.fixture
def start_web_server(tmp_path, artifacts_dir):
    """``start_web_server(database_url, **env)`` → a running WebServer; all are stopped at teardown."""
    started: list[WebServer] = []

    def start(database_url: str, **extra: str) -> WebServer:
        env = web_env(database_url, AOL_ARTIFACTS_DIR=str(artifacts_dir), **extra)
        server = WebServer(env, tmp_path / f"web-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``stop()`` drops every connection, ``start()`` listens again."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                try:
                    self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
                except OSError:
                    pass
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class DatabaseSwitch:
    """A DATABASE_URL for subprocesses whose database can be taken down (``down()``) and back (``up()``)."""

    def __init__(self, tmp_path: Path, password: str = ""):
        self._proxy: TcpProxy | None = None
        db = connection.settings_dict
        if connection.vendor == "postgresql":
            self._proxy = TcpProxy((db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)))
            self._proxy.start()
            auth = (db.get("USER") or "postgres") + (f":{password}" if password else "")
            self.url = f"postgres://{auth}@127.0.0.1:{self._proxy.port}/{db['NAME']}"
        else:
            self._path = tmp_path / "switched.sqlite3"
            self._away = tmp_path / "switched.sqlite3.away"
            self.url = f"sqlite:///{self._path}"
        self.copy_now()

    def copy_now(self) -> None:
        """SQLite: take a fresh copy of the test database (call after writing what the server must see)."""
        if self._proxy is None:
            source = sqlite3.connect(connection.settings_dict["NAME"])
            target = sqlite3.connect(self._path)
            with target:
                source.backup(target)
            source.close()
            target.close()

    def down(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
        else:
            shutil.move(self._path, self._away)

    def up(self) -> None:
        if self._proxy is not None:
            self._proxy.start()
        else:
            shutil.move(self._away, self._path)

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()


@pytest.fixture
def database_switch(tmp_path):
    switch = DatabaseSwitch(tmp_path)
    yield switch
    switch.close()
