"""WEBHOOK: the exact request as PROOF, a signed POST in REAL, and each answer of a real receiver on 127.0.0.1."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone

from orchestration.adapters import adapter_get
from orchestration.adapters.artifacts import artifact_path, sha256_bytes
from orchestration.adapters.webhook import SIGNATURE_HEADER, webhook_idempotency_key
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import InvalidPayload
from orchestration.models import Action, ActionStatus, ExecutionLog
from orchestration.services.approval import action_approve, approval_review
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.webhook_server import SECRET, SECRET_ENV

# On SQLite only: what these tests time is HTTP (timeouts, Retry-After, dropped connections) against a
# local receiver; recording the outcomes is the services' and tests/commands/test_webhook_daemon.py's
# part, on both databases.
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_only]

PAYLOAD = {"endpoint": "crm", "event": "lead.created", "data": {"email": "ann@example.com", "name": "Ann — Ö"}}


def enqueue(key: str = "hook-1", **changes) -> Action:
    action, _ = action_enqueue(action_type="WEBHOOK", payload={**PAYLOAD, **changes}, idempotency_key=key)
    return action


def tick(number: int = 0, *, real: bool = True) -> None:
    control_set_proof_mode(enabled=not real, actor="ops", reason="webhook test")
    Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None).tick(number)


def make_due(action: Action) -> None:
    Action.objects.filter(pk=action.pk).update(not_before=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def ungated(webhook_settings):
    webhook_settings.AOL_APPROVAL_REQUIRED_TYPES = []
    return webhook_settings


def test_registry__webhook_is_registered_idempotent_with_real_support_and_approval():
    adapter = adapter_get("WEBHOOK")
    assert adapter.supports_real and adapter.is_idempotent and adapter.supports_approval


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"endpoint": "erp"}, "'endpoint' 'erp' is not configured in AOL_WEBHOOKS (known: crm)"),
        ({"event": ""}, "'event' must not be empty"),
        ({"event": "a\nb"}, "'event' must be one line"),
        ({"data": [1]}, "'data' must be a dict, not list"),
        ({"extra": 1}, "unknown field(s) 'extra'"),
    ],
)
def test_webhook__bad_payload_is_refused_and_nothing_is_queued(webhook_settings, changes, error):
    with pytest.raises(InvalidPayload) as raised:
        enqueue(**changes)
    assert error in str(raised.value)
    assert not Action.objects.exists()


def test_webhook__proof_writes_the_exact_request_without_the_signature_or_secret(webhook_settings, webhook_server):
    action = enqueue()
    tick(real=False)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS and webhook_server.requests == []
    log = ExecutionLog.objects.get(action_id=action.pk)
    artifact = artifact_path(log.artifact_ref).read_bytes()
    assert log.artifact_ref.endswith(".http") and sha256_bytes(artifact) == log.artifact_sha256
    head, body = artifact.split(b"\n\n", 1)
    lines = head.decode().split("\n")
    assert lines[0] == f"POST {webhook_server.url}"
    assert f"Idempotency-Key: {webhook_idempotency_key('hook-1')}" in lines
    assert "Content-Type: application/json" in lines and f"Content-Length: {len(body)}" in lines
    assert lines[-1].startswith(f"{SIGNATURE_HEADER}: t=<unix time at sending>,v1=<HMAC-SHA256")
    assert SECRET.encode() not in artifact
    assert body.decode() == (
        '{"created_at":"' + action.created_at.isoformat() + '","data":{"email":"ann@example.com","name":"Ann — Ö"},'
        '"event":"lead.created","id":"' + webhook_idempotency_key("hook-1") + '"}'
    )
    # A re-run renders the same bytes.
    assert adapter_get("WEBHOOK").proof_render(action).content == artifact


def test_webhook__real_sends_exactly_the_rendered_request_signed_and_records_the_remote_id(ungated, webhook_server):
    action = enqueue()
    rendered = adapter_get("WEBHOOK").proof_render(action).content
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    [received] = webhook_server.requests
    head, body = rendered.split(b"\n\n", 1)
    assert received.body == body and received.path == "/hooks/aol"
    for line in head.decode().split("\n")[1:-1]:  # every header but the signature's placeholder
        name, value = line.split(": ", 1)
        assert received.headers[name.lower()] == value
    assert received.headers["aol-signature"].startswith("t=")  # the receiver verified it, or it would be 401
    assert set(received.headers) == {  # what the artifact shows, plus what http.client adds (docs/platforms.md)
        "content-type", "content-length", "user-agent", "idempotency-key", "aol-signature", "host", "accept-encoding"
    }  # fmt: skip
    assert received.headers["accept-encoding"] == "identity"
    assert len(webhook_server.events) == 1 and webhook_server.events[0]["event"] == "lead.created"
    assert (action.remote_id, action.remote_url) == ("evt-1", f"http://127.0.0.1:{webhook_server.port}/events/1")
    log = ExecutionLog.objects.get(action_id=action.pk)
    assert log.message.startswith("REAL: POSTed") and "answered 201, id evt-1" in log.message
    assert SECRET not in log.message and SECRET not in received.headers["aol-signature"]


def test_webhook__500_is_retried_and_the_retry_succeeds_once(ungated, webhook_server):
    webhook_server.script.append(500)
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.RETRY, 1)
    assert action.last_error.startswith("TransientAdapterError: webhook 'crm' (http://127.0.0.1:")
    assert "answered 500" in action.last_error
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert (action.status, action.attempts, action.remote_id) == (ActionStatus.SUCCESS, 2, "evt-1")
    assert len(webhook_server.events) == 1


def test_webhook__429_with_retry_after_is_retried_when_the_receiver_said(ungated, webhook_server):
    ungated.AOL_RETRY_BACKOFF_SECONDS = 1  # the backoff would retry after 1 s; Retry-After says 120
    webhook_server.script.append((429, {"Retry-After": "120"}))
    action = enqueue()
    before = timezone.now()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRY and action.last_error.startswith("RetryLater: ")
    wait = (action.not_before - before).total_seconds()
    assert 119 <= wait <= 125, wait
    assert (
        "retrying in 120s (as its Retry-After asked)" in ExecutionLog.objects.filter(action_id=action.pk).last().message
    )
    assert webhook_server.events == []


def test_webhook__a_receiver_that_does_not_answer_in_time_is_retried_with_the_same_key(ungated, webhook_server):
    ungated.AOL_WEBHOOKS = {"crm": webhook_server.endpoint(timeout_seconds=0.5)}
    webhook_server.script.append("hang")
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRY
    assert "did not answer within 0.5s; outcome unknown" in action.last_error
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS, action.last_error
    first, second = webhook_server.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] and first.body == second.body
    assert len(webhook_server.events) == 1


def test_webhook__dropped_after_the_receiver_stored_it__the_retry_is_deduplicated(ungated, webhook_server):
    webhook_server.script.append("drop")
    action = enqueue()
    tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRY
    assert "the connection failed after the request was sent" in action.last_error
    assert len(webhook_server.events) == 1  # it did arrive
    make_due(action)
    tick(1)
    action.refresh_from_db()
    assert (action.status, action.remote_id) == (ActionStatus.SUCCESS, "evt-1")
    assert len(webhook_server.requests) == 2 and len(webhook_server.events) == 1  # exactly one stored event
    first, second = webhook_server.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (401, f"check that {SECRET_ENV} holds the secret the receiver verifies AOL-Signature with"),
        (404, "Check AOL_WEBHOOKS['crm']['url']: the receiver has no such endpoint"),
        (422, "The receiver refused this event as it stands"),
    ],
)
def test_webhook__other_4xx_go_to_the_dlq_at_once_saying_what_to_check(ungated, webhook_server, status, advice):
    webhook_server.script.append(status)
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.DLQ, 1)
    assert f"answered {status}" in action.last_error and advice in action.last_error


def test_webhook__a_wrong_secret_is_refused_by_the_receiver_and_never_shown(ungated, webhook_server):
    ungated.WEBHOOK_SECRETS = {SECRET_ENV: "not-the-receivers-secret"}
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ and "answered 401" in action.last_error
    assert "not-the-receivers-secret" not in action.last_error and webhook_server.events == []


def test_webhook__nobody_listening_is_transient(ungated, webhook_server):
    webhook_server.stop()
    action = enqueue()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRY
    assert "could not connect: ConnectionRefusedError" in action.last_error


def test_webhook__real_without_its_secret_refuses_naming_the_variable(ungated, webhook_server):
    ungated.WEBHOOK_SECRETS = {}
    action = enqueue()
    assert SECRET_ENV in adapter_get("WEBHOOK").real_problem()
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ and f"its signing secret variable {SECRET_ENV} is not set" in (
        action.last_error
    )
    assert webhook_server.requests == []


def test_webhook__approval_binds_the_exact_request_and_a_changed_url_is_refused(webhook_settings, webhook_server):
    approved = enqueue("approved")
    changed = enqueue("changed")
    Action.objects.update(requires_approval=True)
    tick(0)
    reviews = {}
    for action in (approved, changed):
        action.refresh_from_db()
        assert action.status == ActionStatus.AWAITING_APPROVAL
        reviews[action.pk] = approval_review(action=action)
    for action in (approved, changed):
        action_approve(action_id=action.pk, sha256=reviews[action.pk].sha256, actor="ops", reason="checked")
    assert webhook_server.requests == []
    webhook_settings.AOL_MAX_ACTIONS_PER_TICK = 1  # the older one, ``approved``, runs first
    tick(1)
    approved.refresh_from_db()
    assert approved.status == ActionStatus.SUCCESS, approved.last_error
    [received] = webhook_server.requests
    artifact = artifact_path(approved.approval_artifact_ref).read_bytes()
    assert artifact.split(b"\n\n", 1)[1] == received.body
    # The endpoint's URL is part of what was approved: pointing it elsewhere voids the approval.
    webhook_settings.AOL_WEBHOOKS = {"crm": {**webhook_server.endpoint(), "url": webhook_server.url + "/v2"}}
    tick(2)
    changed.refresh_from_db()
    assert changed.status == ActionStatus.DLQ and "content changed since approval" in changed.last_error
    assert len(webhook_server.requests) == 1


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ("{", "AOL_WEBHOOKS='{' is not a JSON object."),
        ({"CRM": {"url": "https://x.example", "secret_env": "S"}}, "a name is 1-64 lower-case letters"),
        ({"crm": {"url": "ftp://x.example", "secret_env": "S"}}, "'url' must be an absolute http or https URL"),
        ({"crm": {"url": "https://u:p@x.example", "secret_env": "S"}}, "'url' must not hold a user or password"),
        ({"crm": {"url": "https://x.example"}}, "'secret_env' must name the environment variable"),
        ({"crm": {"url": "https://x.example", "secret_env": "S", "timeout_seconds": 0}}, "'timeout_seconds' must be"),
        ({"crm": {"url": "https://x.example", "secret_env": "S", "retries": 3}}, "unknown field(s) retries"),
    ],
)
def test_check__bad_aol_webhooks_is_an_error_naming_it(settings, config, error):
    settings.AOL_WEBHOOKS = config
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    assert "orchestration.E090" in str(raised.value) and error in str(raised.value)


def test_check__a_missing_secret_variable_is_a_warning(settings, capsys):
    settings.AOL_WEBHOOKS = {"crm": {"url": "https://x.example/hook", "secret_env": "CRM_WEBHOOK_SECRET"}}
    settings.WEBHOOK_SECRETS = {}
    call_command("check")
    assert "orchestration.W091" in capsys.readouterr().err


def test_approval_review__an_endpoint_removed_since_the_proof_run_is_a_problem_not_an_error(webhook_settings):
    action = enqueue()
    Action.objects.filter(pk=action.pk).update(requires_approval=True)
    tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL
    webhook_settings.AOL_WEBHOOKS = {}
    review = approval_review(action=action)
    assert "cannot be re-rendered" in review.problem and "'crm' is no longer configured" in review.problem
