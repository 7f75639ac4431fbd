"""The planner API's routes doing their job (Django's test client): propose, batch, follow, read, cancel, stop."""

import hashlib
import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from orchestration.adapters.artifacts import artifact_path
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.models import Action, ActionStatus, AuditEntry, ControlFlags, ExecutionLog
from orchestration.services.enqueue import action_enqueue
from tests.api.conftest import POST
from tests.console_fixtures import client_for, operator, superuser, viewer  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def tick() -> None:
    Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None).tick(0)


def test_propose__201_then_200_for_the_same_key_and_payload_and_audited_as_the_token(api_client):
    client = api_client("propose", name="planner-prod")
    created = client.post("/api/v1/actions", {**POST, "idempotency_key": "launch-1", "reason": "launch week"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == ActionStatus.PENDING and body["idempotency_key"] == "launch-1"
    assert body["url"] == f"/api/v1/actions/{body['id']}" and body["payload"] == POST["payload"]
    again = client.post("/api/v1/actions", {**POST, "idempotency_key": "launch-1"})
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert Action.objects.count() == 1
    entry = AuditEntry.objects.filter(verb="enqueue").order_by("id").first()
    assert entry.actor == "token:planner-prod" and entry.reason == "launch week"


def test_propose__takes_the_key_from_the_idempotency_key_header(api_client):
    client = api_client("propose")
    first = client.post("/api/v1/actions", POST, headers={"Idempotency-Key": "from-header"})
    assert first.status_code == 201 and first.json()["idempotency_key"] == "from-header"
    body = {**POST, "idempotency_key": "from-header"}
    same = client.post("/api/v1/actions", body, headers={"Idempotency-Key": "from-header"})
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]


def test_propose__same_key_other_payload_is_a_409_and_writes_nothing(api_client):
    client = api_client("propose")
    client.post("/api/v1/actions", {**POST, "idempotency_key": "k"})
    other = client.post(
        "/api/v1/actions", {**POST, "idempotency_key": "k", "payload": {"platform": "x", "message": "b"}}
    )
    assert other.status_code == 409 and other["Content-Type"] == "application/problem+json"
    assert other.json()["field"] == "idempotency_key" and "different payload" in other.json()["detail"]
    assert Action.objects.get().payload == POST["payload"]


def test_batch__creates_all_in_one_go_and_reports_existing_ones(api_client):
    client = api_client("propose")
    client.post("/api/v1/actions", {**POST, "idempotency_key": "old"})
    items = [{**POST, "idempotency_key": f"b{n}"} for n in range(3)] + [{**POST, "idempotency_key": "old"}]
    response = client.post("/api/v1/actions/batch", {"actions": items, "reason": "campaign"})
    assert response.status_code == 201, response.content
    assert len(response.json()["created"]) == 3 and len(response.json()["existing"]) == 1
    assert Action.objects.count() == 4
    entry = AuditEntry.objects.filter(verb="enqueue").latest("id")
    assert entry.actor.startswith("token:") and entry.reason == "campaign"


def test_batch__a_conflicting_key_is_a_409_and_nothing_of_the_batch_is_written(api_client):
    client = api_client("propose")
    client.post("/api/v1/actions", {**POST, "idempotency_key": "held"})
    other = {"platform": "x", "message": "other words"}
    items = [{**POST, "idempotency_key": "new-1"}, {**POST, "idempotency_key": "held", "payload": other}]
    response = client.post("/api/v1/actions/batch", {"actions": items})
    assert response.status_code == 409, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["items"] == [2] and response.json()["field"] == "idempotency_key"
    assert Action.objects.count() == 1


def test_list__keyset_pages_with_filters_and_a_next_link(api_client):
    for n in range(5):
        action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key=f"s{n}")
    action_enqueue(**POST, idempotency_key="p")
    client = api_client("read")
    first = client.get("/api/v1/actions?type=SLEEP&limit=2").json()
    assert [a["idempotency_key"] for a in first["actions"]] == ["s0", "s1"]
    assert "payload" not in first["actions"][0]  # the list is a summary; the detail has the payload
    seen = [a["idempotency_key"] for a in first["actions"]]
    page = first
    while page["next"]:
        assert "after=" in page["next"] and "type=SLEEP" in page["next"]
        page = client.get(page["next"]).json()
        seen += [a["idempotency_key"] for a in page["actions"]]
    assert seen == ["s0", "s1", "s2", "s3", "s4"] and page["next_after"] is None
    pending = client.get("/api/v1/actions?status=PENDING&type=POST_SOCIAL").json()
    assert [a["idempotency_key"] for a in pending["actions"]] == ["p"]


def test_list__never_counts_nor_offsets(api_client):
    for n in range(3):
        action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key=f"s{n}")
    client = api_client("read")
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/api/v1/actions?after=1&limit=1").status_code == 200
    sql = " ".join(query["sql"].upper() for query in captured.captured_queries)
    assert "COUNT(" not in sql and "OFFSET" not in sql


@pytest.mark.parametrize("store", ["files", "database"])
def test_detail_and_artifact__the_proof_draft_with_its_sha256(api_client, settings, store):
    settings.AOL_ARTIFACT_STORE = store
    client = api_client("propose,read")
    proposed = client.post("/api/v1/actions", {**POST, "idempotency_key": "draft-me"}).json()
    tick()
    detail = client.get(proposed["url"]).json()
    assert detail["status"] == ActionStatus.SUCCESS, detail
    assert detail["artifact"]["sha256"] and detail["artifact_url"] == f"/api/v1/actions/{proposed['id']}/artifact"
    artifact = client.get(detail["artifact_url"])
    assert artifact.status_code == 200
    assert artifact["X-Artifact-SHA256"] == detail["artifact"]["sha256"]
    assert hashlib.sha256(artifact.content).hexdigest() == detail["artifact"]["sha256"]
    assert artifact["Content-Type"].startswith(("text/", "application/json"))
    assert b"hello" in artifact.content


def test_artifact__404_problem_when_the_action_has_none_or_does_not_exist(api_client):
    client = api_client("read")
    action, _ = action_enqueue(**POST)
    for path in (f"/api/v1/actions/{action.pk}/artifact", "/api/v1/actions/99999/artifact"):
        response = client.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"


def test_cancel__cancels_once_then_409_and_audited_as_the_token(api_client):
    client = api_client("cancel", name="planner-c")
    action, _ = action_enqueue(**POST)
    done = client.post(f"/api/v1/actions/{action.pk}/cancel", {"reason": "not needed"})
    assert done.status_code == 200 and done.json()["changed"] is True
    assert done.json()["action"]["status"] == ActionStatus.CANCELLED
    again = client.post(f"/api/v1/actions/{action.pk}/cancel")
    assert again.status_code == 409 and again["Content-Type"] == "application/problem+json"
    assert client.post("/api/v1/actions/99999/cancel").status_code == 404
    assert AuditEntry.objects.filter(actor="token:planner-c", reason="not needed").exists()


def test_status_and_stop__pause_and_kill_with_the_pause_scope(api_client):
    client = api_client("read,pause", name="planner-stop")
    assert client.get("/api/v1/status").json()["flags"]["paused"] is False
    paused = client.post("/api/v1/control/pause", {"reason": "anomaly seen"})
    assert paused.status_code == 200 and paused.json()["changed"] is True
    killed = client.post("/api/v1/control/kill")
    assert killed.status_code == 200 and killed.json()["verb"] == "kill"
    flags = ControlFlags.objects.get()
    assert flags.paused and flags.killed and flags.updated_by == "token:planner-stop"
    assert client.get("/api/v1/status").json()["flags"]["killed"] is True


def test_reads__take_a_staff_session_but_writes_do_not(superuser, viewer):  # noqa: F811
    action, _ = action_enqueue(**POST)
    staff = client_for(viewer)
    assert staff.get("/api/v1/status").status_code == 200
    assert staff.get(f"/api/v1/actions/{action.pk}").json()["id"] == action.pk
    assert staff.get("/api/v1/actions").status_code == 200
    # Even a superuser's session cannot write through the API (tokens only), so no CSRF hole opens.
    admin = client_for(superuser)
    refused = admin.post("/api/v1/actions", json.dumps(POST), content_type="application/json")
    assert refused.status_code == 401 and refused["Content-Type"] == "application/problem+json"
    assert admin.post("/api/v1/control/pause").status_code == 401
    assert Action.objects.count() == 1 and not ControlFlags.objects.get().paused


def test_reads__refuse_anonymous_and_non_staff_sessions(django_user_model):
    assert Client().get("/api/v1/status").status_code == 401
    user = django_user_model.objects.create_user("someone", password="x" * 12)
    client = Client()
    client.force_login(user)
    response = client.get("/api/v1/actions")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")


def test_artifact__damaged_is_a_500_problem_and_pruned_a_404(api_client):
    client = api_client("propose,read")
    proposed = client.post("/api/v1/actions", {**POST, "idempotency_key": "to-damage"}).json()
    tick()
    ref = ExecutionLog.objects.exclude(artifact_ref="").get(action_id=proposed["id"]).artifact_ref
    path = artifact_path(ref)
    path.write_bytes(b"tampered")
    damaged = client.get(f"/api/v1/actions/{proposed['id']}/artifact")
    assert damaged.status_code == 500 and damaged["Content-Type"] == "application/problem+json"
    assert damaged.json()["type"].endswith("artifact-damaged") and b"tampered" not in damaged.content
    path.unlink()
    gone = client.get(f"/api/v1/actions/{proposed['id']}/artifact")
    assert gone.status_code == 404 and "pruned" in gone.json()["detail"]
