"""A small OpenAI-compatible HTTP server on 127.0.0.1 for the real ``openai`` client to talk to.

Implements POST /v1/chat/completions. ``server.mode`` picks the behaviour of the next requests:
``ok`` (a draft built from the prompt), ``500`` (server error), ``hang`` (no answer until the test
ends), ``401`` (rejects the key, echoing it back as careless servers do).
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.loopback import SHUTDOWN_POLL_SECONDS


class _Handler(BaseHTTPRequestHandler):
    server: "FakeOpenAIServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        owner = self.server
        with owner.lock:
            owner.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"), "body": body})
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
        mode = owner.mode
        if mode == "hang":
            owner.release.wait(timeout=60)
            return
        if mode == "500":
            return self._send(500, {"error": {"message": "the model server fell over", "type": "server_error"}})
        if mode == "401":
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {key}. You can find your API key at your dashboard."
            return self._send(401, {"error": {"message": message, "type": "invalid_request_error"}})
        prompt = body["messages"][-1]["content"]
        brief = prompt.split("Brief: ", 1)[-1]
        reply = f"Fresh from the fake model: {brief}"
        self._send(
            200,
            {
                "id": f"chatcmpl-{len(owner.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            },
        )

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeOpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "ok"
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at teardown to end hanging requests
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS}, name="fake-openai", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def completions(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"].rstrip("/") == "/v1/chat/completions"]

    def start(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


@pytest.fixture
def openai_server():
    """A running fake OpenAI server; ``openai_server.base_url`` goes into OPENAI_BASE_URL."""
    server = FakeOpenAIServer().start()
    yield server
    server.stop()
