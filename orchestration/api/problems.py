"""Every error of the HTTP API as ``application/problem+json`` (RFC 9457).

A problem has ``type`` (a URN naming the kind, listed in docs/api.md; ``about:blank`` for plain
HTTP errors), ``title``, ``status``, ``detail`` and ``instance`` (the request's path), plus the
extensions ``field`` (the input concerned), ``items`` (1-based positions in a batch) and
``errors`` (every validation error: ``location`` and ``detail``).
"""

import json
from http import HTTPStatus
from typing import Any

from django.http import HttpRequest, HttpResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:aicmo:aol:problem:"


def problem_type(kind: str) -> str:
    return f"{TYPE_PREFIX}{kind}"


def problem_response(
    request: HttpRequest | None,
    *,
    status: int,
    detail: str,
    kind: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> HttpResponse:
    """A problem+json response; extensions whose value is None or empty are left out."""
    body: dict[str, Any] = {
        "type": problem_type(kind) if kind else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.path
    body.update({name: value for name, value in extensions.items() if value not in (None, (), [], "")})
    response = HttpResponse(json.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def is_problem(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith(PROBLEM_CONTENT_TYPE)
