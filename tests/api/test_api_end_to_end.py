"""End to end: a planner written against the served openapi.json, a real web server and a real PROOF daemon."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration.models import ActionStatus
from orchestration.services.tokens import token_create
from tests.conftest import test_database_url, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class OpenApiPlanner:
    """Knows nothing of the API but its schema: operations are looked up by operationId."""

    def __init__(self, server: Any, secret: str) -> None:
        self.server = server
        self.secret = secret
        status, text, _ = server.request("/api/v1/openapi.json")
        assert status == 200
        self.spec = json.loads(text)
        assert self.spec["openapi"].startswith("3.")
        self.operations = {
            operation["operationId"]: (method.upper(), path)
            for path, methods in self.spec["paths"].items()
            for method, operation in methods.items()
        }

    def call(self, operation_id: str, body: Any = None, **params: Any) -> tuple[int, Any, Any]:
        method, path = self.operations[operation_id]
        path = path.format(**params)
        headers = {"Authorization": f"Bearer {self.secret}"}
        data = None
        if method == "POST":
            headers["Content-Type"] = "application/json"
            data = json.dumps(body if body is not None else {}).encode()
        status, text, response_headers = self.server.request(path, headers=headers, data=data)
        content_type = response_headers.get("Content-Type", "")
        if "json" in content_type:
            return status, json.loads(text), response_headers
        return status, text, response_headers

    def schema_fields(self, name: str) -> set[str]:
        return set(self.spec["components"]["schemas"][name]["required"])


def test_planner__proposes_follows_to_success_reads_the_artifact_and_cancels(start_web_server, start_daemon):
    _, secret = token_create(name="planner-e2e", scopes="read,propose,cancel", actor="test")
    server = start_web_server(test_database_url())
    start_daemon("--proof")
    planner = OpenApiPlanner(server, secret)

    status, action, _ = planner.call(
        "proposeAction",
        {
            "action_type": "POST_SOCIAL",
            "payload": {"platform": "linkedin", "message": "Launch day"},
            "idempotency_key": "e2e-1",
            "reason": "end-to-end test",
        },
    )
    assert status == 201, action
    assert planner.schema_fields("ActionOut") <= set(action)

    def finished() -> dict | None:
        _, current, _ = planner.call("getAction", action_id=action["id"])
        return current if current["status"] not in ("PENDING", "READY", "RUNNING") else None

    done = wait_until(finished, timeout=30, message="the action to finish")
    assert done["status"] == ActionStatus.SUCCESS, done
    assert done["artifact_url"] and done["artifact"]["sha256"]

    status, content, headers = planner.call("getArtifact", action_id=action["id"])
    assert status == 200 and "Launch day" in content
    assert headers["X-Artifact-SHA256"] == done["artifact"]["sha256"]
    assert hashlib.sha256(content.encode()).hexdigest() == done["artifact"]["sha256"]

    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    status, waiting, _ = planner.call(
        "proposeAction",
        {"action_type": "POST_SOCIAL", "payload": {"platform": "x", "message": "tomorrow"}, "not_before": later},
    )
    assert status == 201
    status, cancelled, _ = planner.call("cancelAction", {"reason": "plan changed"}, action_id=waiting["id"])
    assert status == 200 and cancelled["changed"] is True
    _, waiting, _ = planner.call("getAction", action_id=waiting["id"])
    assert waiting["status"] == ActionStatus.CANCELLED

    status, page, _ = planner.call("listActions")
    assert status == 200 and [a["id"] for a in page["actions"]] == [action["id"], waiting["id"]]
    status, snapshot, _ = planner.call("getStatus")
    assert status == 200 and snapshot["flags"]["mode"] == "PROOF"
    assert secret not in server.output()
