"""A real SMTP server on 127.0.0.1 (aiosmtpd) for SEND_EMAIL's REAL mode to talk to.

``server.mode`` picks how it answers the next messages: ``accept`` (keeps them in
``server.messages``), ``451`` (a temporary refusal at DATA), ``550`` (a permanent refusal of every
recipient). ``server.connections`` counts the sessions opened, so a test can tell that PROOF mode
never connected.
"""

import socket
import threading
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # the message as received, CRLF line endings


class _Handler:
    def __init__(self, server: "SmtpTestServer"):
        self.server = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.server.lock:
            self.server.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.server.mode == "550":
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.server.mode == "451":
            return "451 4.3.0 try again later"
        with self.server.lock:
            self.server.messages.append(
                ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
            )
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpTestServer:
    def __init__(self):
        self.mode = "accept"
        self.messages: list[ReceivedMessage] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10)

    def start(self) -> "SmtpTestServer":
        self._controller.start()
        # The controller's own readiness probe opened a session; count only the code under test.
        with self.lock:
            self.connections = 0
        return self

    def stop(self) -> None:
        self._controller.stop()

    def env(self) -> dict[str, str]:
        """Environment for a daemon subprocess sending through this server."""
        return {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(self.port), "EMAIL_TIMEOUT": "5"}


@pytest.fixture
def smtp_server():
    """A running SMTP server on 127.0.0.1; ``smtp_server.port`` goes into EMAIL_PORT."""
    server = SmtpTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_settings(settings, smtp_server):
    """Point this process's email settings at ``smtp_server`` through Django's real SMTP backend."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    return settings
