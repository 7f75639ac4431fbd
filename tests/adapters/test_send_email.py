"""SEND_EMAIL: payload validation, the PROOF .eml artifact, REAL sends to a real SMTP server on 127.0.0.1."""

import email
import email.policy
import hashlib
from datetime import UTC, datetime

import pytest

from orchestration.adapters import adapter_get, adapters_all
from orchestration.adapters.artifacts import artifact_path, sha256_bytes
from orchestration.adapters.send_email import MAX_RECIPIENTS, message_id_for
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import InvalidPayload, PermanentAdapterError, RealRunUnconfigured, TransientAdapterError
from orchestration.models import Action, ExecutionLog
from orchestration.services.enqueue import action_enqueue
from tests.smtp_server import free_port

pytestmark = pytest.mark.django_db

PAYLOAD = {
    "to": ["ann@example.com", "Bob Example <bob@example.org>"],
    "subject": "Product day — you're invited",
    "body": "Hello,\n\nJoin us on Friday.\n.\nA line with a lone dot, to test SMTP dot-stuffing.\n",
    "from": "AICMO Team <team@example.com>",
}


def enqueue_email(key: str = "mail-1", **changes) -> Action:
    action, _ = action_enqueue(action_type="SEND_EMAIL", payload={**PAYLOAD, **changes}, idempotency_key=key)
    return action


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def test_registry__send_email_is_registered_with_real_support_and_a_non_idempotent_real_send():
    adapter = adapter_get("SEND_EMAIL")
    assert adapters_all()["SEND_EMAIL"] is adapter
    assert adapter.supports_real is True
    assert adapter.is_idempotent is False  # REAL: a resend is a second email


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"to": None}, "'to' is required"),
        ({"to": []}, "'to' must name at least one address"),
        ({"to": 42}, "'to' must be an address or a list of addresses, not int"),
        ({"to": ["ann@example.com", 7]}, "'to' must hold strings"),
        ({"to": "not-an-address"}, "'to' address 'not-an-address' is not a valid email address"),
        ({"to": "ann@example.com\r\nBcc: eve@example.com"}, "must not contain line breaks"),
        ({"to": [f"u{i}@example.com" for i in range(MAX_RECIPIENTS + 1)]}, f"the limit is {MAX_RECIPIENTS}"),
        ({"to": ["ann@example.com", "Ann <ANN@example.com>"]}, "the same address more than once"),
        ({"subject": "Hi\nBcc: eve@example.com"}, "'subject' must be one line"),
        ({"subject": "x" * 251}, "'subject' is 251 characters; the limit is 250"),
        ({"subject": "  "}, "'subject' must not be empty"),
        ({"body": "x" * 50_001}, "'body' is 50001 characters; the limit is 50000"),
        ({"body": None}, "'body' is required"),
        ({"from": "team at example"}, "'from' 'team at example' is not a valid email address"),
        ({"cc": "eve@example.com"}, "unknown field(s) 'cc'"),
    ],
)
def test_send_email__bad_payload_is_refused_and_nothing_is_queued(changes, error):
    payload = {key: value for key, value in {**PAYLOAD, **changes}.items() if value is not None}
    with pytest.raises(InvalidPayload, match=None) as caught:
        action_enqueue(action_type="SEND_EMAIL", payload=payload, idempotency_key="bad")
    assert error in str(caught.value)
    assert not Action.objects.exists()


def test_send_email__a_single_address_string_is_accepted():
    action = enqueue_email(to="ann@example.com")
    assert action.payload["to"] == "ann@example.com"


def test_send_email__proof_writes_the_complete_message_as_eml_with_its_sha256(
    artifacts_dir, smtp_settings, smtp_server
):
    action = enqueue_email("newsletter/2026-01")
    Action.objects.filter(pk=action.pk).update(created_at=datetime(2026, 1, 2, 9, 30, tzinfo=UTC))
    action.refresh_from_db()
    result = adapter_get("SEND_EMAIL").execute(action, proof=True)
    path = artifact_path(result.artifact_ref)
    assert path.parent == artifacts_dir / "send_email" and path.suffix == ".eml"
    data = path.read_bytes()
    assert result.artifact_sha256 == hashlib.sha256(data).hexdigest()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # RFC 5322 line endings
    message = parse(data)
    assert message["Message-ID"] == message_id_for("newsletter/2026-01")
    assert message["Message-ID"] == f"<{hashlib.sha256(b'newsletter/2026-01').hexdigest()[:32]}@aicmo.aol>"
    assert message["Date"] == "Fri, 02 Jan 2026 09:30:00 +0000"
    assert message["From"] == "AICMO Team <team@example.com>"
    assert message["To"] == "ann@example.com, Bob Example <bob@example.org>"
    assert message["Subject"] == PAYLOAD["subject"]
    assert message.get_content().replace("\r\n", "\n") == PAYLOAD["body"]
    # PROOF never talks to the SMTP server, even when one is configured and listening.
    assert smtp_server.connections == 0 and smtp_server.messages == []


def test_send_email__proof_rerun_writes_the_same_bytes(artifacts_dir):
    action = enqueue_email()
    first = adapter_get("SEND_EMAIL").execute(action, proof=True)
    artifact_path(first.artifact_ref).unlink()  # as if the first attempt's effect were lost
    again = adapter_get("SEND_EMAIL").execute(Action.objects.get(pk=action.pk), proof=True)
    assert (again.artifact_ref, again.artifact_sha256) == (first.artifact_ref, first.artifact_sha256)
    assert sha256_bytes(artifact_path(again.artifact_ref).read_bytes()) == first.artifact_sha256


def test_send_email__default_from_is_default_from_email(settings):
    settings.DEFAULT_FROM_EMAIL = "Marketing <marketing@example.com>"
    action, _ = action_enqueue(
        action_type="SEND_EMAIL", payload={"to": "ann@example.com", "subject": "s", "body": "b"}, idempotency_key="k"
    )
    result = adapter_get("SEND_EMAIL").execute(action, proof=True)
    assert parse(artifact_path(result.artifact_ref).read_bytes())["From"] == "Marketing <marketing@example.com>"


def test_send_email__real_sends_to_the_smtp_server_exactly_the_proof_bytes(smtp_settings, smtp_server):
    action = enqueue_email("launch-mail")
    proof = adapter_get("SEND_EMAIL").execute(action, proof=True)
    real = adapter_get("SEND_EMAIL").execute(action, proof=False)
    assert len(smtp_server.messages) == 1
    received = smtp_server.messages[0]
    assert received.mail_from == "team@example.com"
    assert received.rcpt_tos == ["ann@example.com", "bob@example.org"]
    message = parse(received.data)
    assert message["Message-ID"] == message_id_for("launch-mail")
    assert message.get_content().replace("\r\n", "\n") == PAYLOAD["body"]
    # What went out is byte for byte the PROOF artifact (the SMTP dot-stuffing is undone on receipt).
    assert received.data.rstrip(b"\r\n") == artifact_path(proof.artifact_ref).read_bytes().rstrip(b"\r\n")
    assert real.artifact_sha256 == proof.artifact_sha256
    assert f"Message-ID {message_id_for('launch-mail')}" in real.message
    assert f"127.0.0.1:{smtp_server.port}" in real.message


def test_send_email__a_retried_real_send_carries_the_same_message_id(smtp_settings, smtp_server):
    action = enqueue_email("retry-me")
    adapter_get("SEND_EMAIL").execute(action, proof=False)
    adapter_get("SEND_EMAIL").execute(action, proof=False)
    ids = [parse(m.data)["Message-ID"] for m in smtp_server.messages]
    assert ids == [message_id_for("retry-me")] * 2


def test_send_email__451_is_transient_and_550_is_permanent(smtp_settings, smtp_server):
    action = enqueue_email()
    smtp_server.mode = "451"
    with pytest.raises(TransientAdapterError, match="answered 451 4.3.0 try again later"):
        adapter_get("SEND_EMAIL").execute(action, proof=False)
    smtp_server.mode = "550"
    with pytest.raises(PermanentAdapterError, match="refused every recipient: ann@example.com: 550"):
        adapter_get("SEND_EMAIL").execute(action, proof=False)
    assert smtp_server.messages == []


def test_send_email__no_server_listening_is_transient(smtp_settings):
    smtp_settings.EMAIL_PORT = free_port()  # nothing listens there
    with pytest.raises(TransientAdapterError, match=r"SMTP server 127\.0\.0\.1:\d+: ConnectionRefusedError"):
        adapter_get("SEND_EMAIL").execute(enqueue_email(), proof=False)


@pytest.mark.parametrize(
    ("backend", "host", "error"),
    [
        ("django.core.mail.backends.smtp.EmailBackend", "", "EMAIL_HOST is not set; set EMAIL_HOST (and as needed"),
        ("django.core.mail.backends.dummy.EmailBackend", "smtp.example.com", "dummy backend, which sends nothing"),
    ],
)
def test_send_email__real_without_email_settings_refuses_naming_the_variables(settings, backend, host, error):
    settings.EMAIL_BACKEND, settings.EMAIL_HOST = backend, host
    settings.EMAIL_HOST_PASSWORD = "smtp-secret-canary"
    with pytest.raises(RealRunUnconfigured) as caught:
        adapter_get("SEND_EMAIL").execute(enqueue_email(), proof=False)
    assert error in str(caught.value)
    for name in ("EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS", "DEFAULT_FROM_EMAIL"):
        assert name in str(caught.value)
    assert "smtp-secret-canary" not in str(caught.value)
    assert adapter_get("SEND_EMAIL").real_problem()


def test_send_email__tls_and_ssl_together_is_a_permanent_configuration_error(smtp_settings):
    smtp_settings.EMAIL_USE_TLS = smtp_settings.EMAIL_USE_SSL = True
    with pytest.raises(RealRunUnconfigured, match="mutually exclusive"):
        adapter_get("SEND_EMAIL").execute(enqueue_email(), proof=False)


# --- through the daemon's tick: RETRY on 451, DLQ on 550, SUCCESS on accept ---------------------------


def real_tick(number: int = 0):
    daemon = Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None)
    from orchestration.services.control import control_set_proof_mode

    control_set_proof_mode(enabled=False, actor="ops", reason="test REAL sending")
    return daemon.tick(number)


@pytest.mark.parametrize(("mode", "status"), [("accept", "SUCCESS"), ("451", "RETRY"), ("550", "DLQ")])
def test_send_email_tick__smtp_answer_decides_the_action_status(smtp_settings, smtp_server, mode, status):
    smtp_settings.AOL_APPROVAL_REQUIRED_TYPES = []  # the approval gate is tested below
    smtp_server.mode = mode
    action = enqueue_email()
    real_tick()
    action.refresh_from_db()
    assert action.status == status
    assert action.attempts == 1
    if status == "SUCCESS":
        log = ExecutionLog.objects.get(action_id=action.pk)
        assert log.message.startswith("REAL: sent to 2 recipient(s)")
        assert log.artifact_sha256 == sha256_bytes(smtp_server.messages[0].data.rstrip(b"\r\n") + b"\r\n")
        # The Message-ID it was sent with is the action's remote id.
        assert (
            action.remote_id
            == message_id_for(action.idempotency_key)
            == parse(smtp_server.messages[0].data)["Message-ID"]
        )
    else:
        assert action.last_error.startswith(
            "TransientAdapterError" if status == "RETRY" else "PermanentAdapterError"
        ), action.last_error
        assert smtp_server.messages == []


def test_status_view__names_send_email_as_refusing_real_until_email_host_is_set(settings, django_user_model):
    from django.test import Client

    settings.EMAIL_BACKEND, settings.EMAIL_HOST = "django.core.mail.backends.dummy.EmailBackend", ""
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "", "pw-long-enough-123"))
    adapters = {a["action_type"]: a for a in client.get("/console/status.json").json()["adapters"]}
    assert adapters["SEND_EMAIL"]["supports_real"] is False
    assert "EMAIL_HOST" in adapters["SEND_EMAIL"]["real_setup_hint"]
    assert "<strong>SEND_EMAIL</strong>: EMAIL_BACKEND is Django" in client.get("/console/").content.decode()
    settings.EMAIL_BACKEND, settings.EMAIL_HOST = "django.core.mail.backends.smtp.EmailBackend", "smtp.example.com"
    adapters = {a["action_type"]: a for a in client.get("/console/status.json").json()["adapters"]}
    assert adapters["SEND_EMAIL"]["supports_real"] is True


def test_send_email_tick__gated_by_default__sends_nothing_before_approval_then_exactly_the_approved_bytes(
    smtp_settings, smtp_server
):
    from orchestration.services.approval import action_approve, approval_review

    smtp_server.mode = "accept"
    action = enqueue_email()
    real_tick(0)
    action.refresh_from_db()
    assert action.status == "AWAITING_APPROVAL"
    assert smtp_server.messages == []
    review = approval_review(action=action)
    assert review.problem == "" and review.sha256 == review.rendered_sha256
    action_approve(action_id=action.pk, sha256=review.sha256, actor="ops", reason="copy checked")
    real_tick(1)
    action.refresh_from_db()
    assert action.status == "SUCCESS", action.last_error
    [received] = smtp_server.messages
    assert sha256_bytes(received.data.rstrip(b"\r\n") + b"\r\n") == review.sha256
