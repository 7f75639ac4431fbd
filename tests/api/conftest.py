"""Fixtures of the HTTP API tests: tokens of any scopes, and a client that sends one."""

import json
from typing import Any

import pytest
from django.test import Client

from orchestration.models import ApiToken
from orchestration.services.tokens import token_create

ALL_SCOPES = "read,propose,cancel,pause"
POST = {"action_type": "POST_SOCIAL", "payload": {"platform": "x", "message": "hello"}}


class ApiClient:
    """Django's test client with ``Authorization: Bearer <secret>`` on every request (when it has one)."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret
        self.client = Client()

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.secret}"} if self.secret is not None else {}
        return {**headers, **(extra or {})}

    def get(self, path: str, *, headers: dict[str, str] | None = None):
        return self.client.get(path, headers=self.headers(headers))

    def post(
        self, path: str, body: Any = None, *, raw: bytes | str | None = None, headers: dict[str, str] | None = None
    ):
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.client.post(path, data=data, content_type="application/json", headers=self.headers(headers))

    def request(self, method: str, path: str, body: Any = None):
        """Any method (``"PUT"``, ``"DELETE"``…) with a JSON body."""
        data = "" if body is None else json.dumps(body)
        return self.client.generic(method, path, data=data, content_type="application/json", headers=self.headers())


@pytest.fixture
def make_token(db):
    """``make_token("read,propose", name=…)`` → (ApiToken, secret)."""

    def make(scopes: str = ALL_SCOPES, *, name: str | None = None) -> tuple[ApiToken, str]:
        return token_create(name=name or f"planner-{ApiToken.objects.count() + 1}", scopes=scopes, actor="cli:t@h")

    return make


@pytest.fixture
def api_client(make_token):
    """``api_client("read")`` → an ApiClient holding a new token with those scopes (``.token`` is it)."""

    def make(scopes: str = ALL_SCOPES, *, name: str | None = None) -> ApiClient:
        token, secret = make_token(scopes, name=name)
        client = ApiClient(secret)
        client.token = token  # type: ignore[attr-defined]
        return client

    return make
