"""Every kind of bad input, credential and forbidden verb: a problem+json answer, and nothing written."""

from datetime import timedelta
from itertools import combinations

import pytest
from django.test import Client

from orchestration.models import Action, ActionStatus, ApiToken, AuditEntry, ControlFlags, TokenScope
from orchestration.services.control import control_kill, control_pause, control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from orchestration.services.tokens import token_revoke
from tests.api.conftest import POST, ApiClient

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def nothing_written(before_audit: int) -> bool:
    return Action.objects.count() == 0 and AuditEntry.objects.count() == before_audit


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"] and problem["type"]
    return problem


BIG = "x" * (64 * 1024 + 16 * 1024 + 10)


@pytest.mark.parametrize(
    "body, status, field",
    [
        pytest.param('{"action_type": "POST_SOCIAL", "payload": {', 400, None, id="malformed-json"),
        pytest.param("", 422, None, id="empty-body"),
        pytest.param("[1, 2]", 422, None, id="not-an-object"),
        pytest.param({"payload": {"platform": "x"}}, 422, "action_type", id="missing-type"),
        pytest.param({**POST, "priority": "5"}, 422, "priority", id="priority-as-text"),
        pytest.param({**POST, "priority": 101}, 422, "priority", id="priority-out-of-range"),
        pytest.param({**POST, "requires_approval": "true"}, 422, "requires_approval", id="bool-as-text"),
        pytest.param({**POST, "payload": "text"}, 422, "payload", id="payload-not-object"),
        pytest.param({**POST, "colour": "red"}, 422, "colour", id="unknown-field"),
        pytest.param({**POST, "action_type": "LAUNCH_MISSILES"}, 422, "action_type", id="unknown-type"),
        pytest.param({**POST, "payload": {"platform": "x"}}, 422, "payload", id="payload-its-adapter-refuses"),
        pytest.param({**POST, "not_before": "2030-01-01T00:00:00"}, 422, "not_before", id="naive-not-before"),
        pytest.param({**POST, "not_before": "tomorrow"}, 422, "not_before", id="not-a-date"),
        pytest.param({**POST, "idempotency_key": ""}, 422, "idempotency_key", id="empty-key"),
        pytest.param({**POST, "payload": {"platform": "x", "message": BIG}}, 413, None, id="oversized"),
    ],
)
def test_propose__bad_input_is_a_problem_naming_the_field_and_writes_nothing(api_client, body, status, field):
    client = api_client("propose")
    audit = AuditEntry.objects.count()
    response = (
        client.post("/api/v1/actions", raw=body) if isinstance(body, str) else client.post("/api/v1/actions", body)
    )
    problem = assert_problem(response, status)
    assert problem.get("field") == field, problem
    assert nothing_written(audit)


def test_propose__a_header_key_that_differs_from_the_body_key_is_a_422(api_client):
    client = api_client("propose")
    response = client.post("/api/v1/actions", {**POST, "idempotency_key": "a"}, headers={"Idempotency-Key": "b"})
    assert assert_problem(response, 422)["field"] == "idempotency_key"
    assert Action.objects.count() == 0


def test_batch__1001_actions_are_refused_whole(api_client):
    client = api_client("propose")
    items = [{**POST, "idempotency_key": f"k{n}"} for n in range(1001)]
    problem = assert_problem(client.post("/api/v1/actions/batch", {"actions": items}), 422)
    assert "actions" in problem["detail"]
    assert Action.objects.count() == 0


def test_batch__one_bad_item_refuses_all_and_names_it(api_client):
    client = api_client("propose")
    items = [{**POST, "idempotency_key": f"k{n}"} for n in range(5)]
    items[3] = {**items[3], "action_type": "NOPE"}
    problem = assert_problem(client.post("/api/v1/actions/batch", {"actions": items}), 422)
    assert problem["items"] == [4] and problem["field"] == "action_type"
    items[3] = {**POST, "idempotency_key": "k3", "priority": "high"}
    problem = assert_problem(client.post("/api/v1/actions/batch", {"actions": items}), 422)
    assert problem["items"] == [4] and problem["field"] == "priority"
    assert_problem(client.post("/api/v1/actions/batch", {"actions": []}), 422)
    assert_problem(client.post("/api/v1/actions/batch", {"actions": [POST], "extra": 1}), 422)
    assert Action.objects.count() == 0


@pytest.mark.parametrize(
    "query, field",
    [
        ("status=DONE", "status"),
        ("type=NOPE", "type"),
        ("after=x", "after"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
    ],
)
def test_list__bad_filters_are_problems_naming_the_parameter(api_client, query, field):
    assert assert_problem(api_client("read").get(f"/api/v1/actions?{query}"), 422)["field"] == field


# --- Credentials ---------------------------------------------------------------------------------------


def _post_and_status(client: ApiClient):
    return client.post("/api/v1/actions", POST), client.get("/api/v1/status")


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer ", "Bearer aol_not-a-token", "Bearer not-even-prefixed", "Basic dXNlcjpwYXNz", "Token aol_x"],
)
def test_credentials__missing_or_unknown_tokens_get_401(authorization):
    client = Client()
    headers = {"Authorization": authorization} if authorization is not None else {}
    for response in (
        client.post("/api/v1/actions", POST, content_type="application/json", headers=headers),
        client.get("/api/v1/actions", headers=headers),
    ):
        problem = assert_problem(response, 401)
        assert response["WWW-Authenticate"].startswith("Bearer")
        if authorization and len(authorization) > 8:
            assert authorization.split(" ", 1)[1] not in problem["detail"]  # never echoed
    assert Action.objects.count() == 0


def test_credentials__revoked_and_expired_tokens_get_401_saying_why(api_client):
    revoked = api_client(name="revoked-one")
    token_revoke(name="revoked-one", actor="test", reason="leaked")
    expired = api_client(name="expired-one")
    ApiToken.objects.filter(name="expired-one").update(expires_at=expired.token.created_at - timedelta(days=1))
    for client, why in ((revoked, "revoked"), (expired, "expired")):
        for response in _post_and_status(client):
            assert why in assert_problem(response, 401)["detail"]
            assert client.secret not in response.content.decode()
    assert Action.objects.count() == 0


ROUTES = [
    ("POST", "/api/v1/actions", POST, TokenScope.PROPOSE),
    ("POST", "/api/v1/actions/batch", {"actions": [POST]}, TokenScope.PROPOSE),
    ("GET", "/api/v1/actions", None, TokenScope.READ),
    ("GET", "/api/v1/actions/{id}", None, TokenScope.READ),
    ("GET", "/api/v1/actions/{id}/artifact", None, TokenScope.READ),
    ("POST", "/api/v1/actions/{id}/cancel", None, TokenScope.CANCEL),
    ("GET", "/api/v1/status", None, TokenScope.READ),
    ("POST", "/api/v1/control/pause", None, TokenScope.PAUSE),
    ("POST", "/api/v1/control/kill", None, TokenScope.PAUSE),
]


@pytest.mark.parametrize("method, path, body, scope", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_scopes__a_token_without_the_route_s_scope_gets_403_and_changes_nothing(api_client, method, path, body, scope):
    action, _ = action_enqueue(**POST, idempotency_key="existing")
    others = ",".join(s for s in TokenScope.values if s != scope)
    client = api_client(others)
    audit = AuditEntry.objects.count()
    response = client.request(method, path.format(id=action.pk), body)
    problem = assert_problem(response, 403)
    assert problem["type"].endswith("scope-missing") and scope in problem["detail"]
    assert Action.objects.count() == 1 and Action.objects.get().status == ActionStatus.PENDING
    assert AuditEntry.objects.count() == audit
    flags = ControlFlags.objects.get()
    assert not flags.paused and not flags.killed


# --- Forbidden verbs: no route, whatever the token ------------------------------------------------------

FORBIDDEN = [
    "/api/v1/control/resume",
    "/api/v1/control/revive",
    "/api/v1/control/real",
    "/api/v1/control/proof",
    "/api/v1/control/proof/off",
    "/api/v1/actions/{id}/approve",
    "/api/v1/actions/{id}/reject",
    "/api/v1/actions/{id}/retry",
    "/api/v1/actions/{id}/retract",
    "/api/v1/rate-limits",
    "/api/v1/approvals/{id}/approve",
]

ALL_SCOPE_SETS = [
    ",".join(combo) for size in range(1, len(TokenScope.values) + 1) for combo in combinations(TokenScope.values, size)
]


def _world() -> tuple:
    flags = ControlFlags.objects.get()
    return (
        flags.paused,
        flags.killed,
        flags.proof_mode,
        tuple(Action.objects.order_by("id").values_list("status", "approved_at")),
    )


@pytest.mark.parametrize("scopes", ALL_SCOPE_SETS)
def test_forbidden_verbs__no_token_can_approve_reject_resume_revive_or_go_real(api_client, scopes, settings):
    settings.AOL_APPROVAL_REQUIRED_TYPES = ["POST_SOCIAL"]
    action, _ = action_enqueue(**POST, idempotency_key="gated")
    Action.objects.filter(pk=action.pk).update(status=ActionStatus.AWAITING_APPROVAL)
    control_pause(actor="test", reason="paused by a person")
    control_kill(actor="test", reason="killed by a person")
    control_set_proof_mode(enabled=True, actor="test", reason="PROOF")
    client = api_client(scopes)
    before, audit = _world(), AuditEntry.objects.count()
    for path in FORBIDDEN:
        for method in ("POST", "GET", "PUT", "PATCH", "DELETE"):
            response = client.request(method, path.format(id=action.pk), {"reason": "let me", "enabled": False})
            assert response.status_code in (404, 405), (method, path, response.status_code)
            assert response["Content-Type"] == PROBLEM
    # The routes that exist do not take these verbs by another method either.
    for method in ("PUT", "PATCH", "DELETE"):
        assert client.request(method, f"/api/v1/actions/{action.pk}", {"status": "READY"}).status_code == 405
        assert client.request(method, "/api/v1/control/pause", {"paused": False}).status_code == 405
    assert _world() == before and AuditEntry.objects.count() == audit


CONSOLE_AND_ADMIN = [
    ("POST", "/console/control/resume/"),
    ("POST", "/console/control/revive/"),
    ("POST", "/console/control/proof/"),
    ("POST", "/console/control/real/"),
    ("POST", "/console/approvals/{id}/approve/"),
    ("POST", "/console/approvals/{id}/reject/"),
    ("POST", "/console/enqueue/"),
    ("GET", "/console/"),
    ("GET", "/console/status.json"),
    ("GET", "/admin/"),
    ("POST", "/admin/orchestration/controlflags/1/change/"),
    ("GET", "/admin/orchestration/apitoken/"),
    ("POST", "/admin/orchestration/apitoken/add/"),
]


@pytest.mark.parametrize("scopes", ALL_SCOPE_SETS)
def test_tokens__cannot_reach_the_staff_console_or_the_admin(api_client, scopes, settings):
    settings.AOL_APPROVAL_REQUIRED_TYPES = ["POST_SOCIAL"]
    action, _ = action_enqueue(**POST, idempotency_key="gated")
    Action.objects.filter(pk=action.pk).update(status=ActionStatus.AWAITING_APPROVAL)
    control_pause(actor="test", reason="paused by a person")
    client = api_client(scopes)
    before, tokens, audit = _world(), ApiToken.objects.count(), AuditEntry.objects.count()
    client.client = Client(enforce_csrf_checks=True)  # as a real client: no CSRF token to send
    for method, path in CONSOLE_AND_ADMIN:
        data = {"reason": "let me", "paused": "", "name": "minted", "scopes": "read"}
        url = path.format(id=action.pk)
        if method == "GET":
            response = client.client.get(url, headers=client.headers())
        else:
            response = client.client.post(url, data, headers=client.headers())
        assert response.status_code in (302, 401, 403), (path, response.status_code)
        if response.status_code == 302:
            assert "/login/" in response["Location"], (path, response["Location"])
        assert client.secret not in response.content.decode()
    assert _world() == before and ApiToken.objects.count() == tokens and AuditEntry.objects.count() == audit


def test_unknown_api_paths_and_server_side_detail_are_problem_json():
    for path in ("/api/", "/api/v2/actions", "/api/v1/nothing-here"):
        assert_problem(Client().get(path), 404)
