"""The database artifact store (AOL_ARTIFACT_STORE=database): written with the SUCCESS, read by every reader."""

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from orchestration.adapters import adapter_get
from orchestration.adapters.artifacts import sha256_bytes
from orchestration.adapters.store import (
    DB_PREFIX,
    artifact_put,
    artifact_read,
    artifact_rows_write,
    artifact_store_probe_detail,
    artifact_verify,
    ref_in_database,
)
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.exceptions import ApprovalRefused, ArtifactNotFound, LeaseNotHeld
from orchestration.models import Action, ActionStatus, Artifact, ExecutionLog, Lease
from orchestration.services.approval import action_approve, approval_review
from orchestration.services.claim import action_claim_due
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from orchestration.services.results import action_mark_success
from orchestration.services.retention import retention_prune, storage_sizes
from tests.factories import OLD, OWNER, hold_lease, post_social
from tests.fake_adapters import FLOW_ADAPTERS

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def database_store(settings):
    settings.AOL_ARTIFACT_STORE = "database"


def tick(n: int = 0):
    daemon = Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None)
    return daemon.tick(n)


def test_database_store__a_proof_run_stores_its_artifact_in_the_table_and_no_file(artifacts_dir):
    action = post_social("db-1", message="stored in the database")
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS
    log = ExecutionLog.objects.get(action_id=action.pk, artifact_ref__gt="")
    assert log.artifact_ref == f"{DB_PREFIX}{log.artifact_sha256}"
    row = Artifact.objects.get()
    assert (row.sha256, row.size, row.content_type) == (log.artifact_sha256, len(bytes(row.content)), "text/plain")
    assert row.name.startswith("post_social/") and f"_{action.pk}_db-1.txt" in row.name
    content = artifact_read(ref=log.artifact_ref)
    assert b"stored in the database" in content and sha256_bytes(content) == log.artifact_sha256
    assert artifact_verify(ref=log.artifact_ref, sha256=log.artifact_sha256)
    assert not artifacts_dir.exists() or not any(artifacts_dir.rglob("*.txt"))


def test_database_store__the_artifact_is_written_only_with_the_success_a_fenced_out_success_leaves_none():
    post_social("db-fenced")
    token = hold_lease()
    (action,) = action_claim_due(owner=OWNER, token=token, limit=1)
    result = adapter_get("POST_SOCIAL").execute(action, proof=True)
    assert result.pending_artifact is not None and not Artifact.objects.exists()  # nothing written yet
    Lease.objects.update(token=token + 1)  # another daemon took over
    with pytest.raises(LeaseNotHeld):
        action_mark_success(
            action=action,
            token=token,
            actor=OWNER,
            message=result.message,
            artifact_ref=result.artifact_ref,
            artifact_sha256=result.artifact_sha256,
            pending_artifact=result.pending_artifact,
        )
    assert not Artifact.objects.exists() and not ExecutionLog.objects.filter(action_id=action.pk).exists()


def test_database_store__same_bytes_twice_are_one_row_written_again(settings):
    first = artifact_put(name="sleep/a.txt", content=b"same bytes\n")
    second = artifact_put(name="sleep/b.txt", content=b"same bytes\n")
    assert first.ref == second.ref and first.pending is not None and second.pending is not None
    artifact_rows_write(pending=[first.pending], written_at=OLD)
    artifact_rows_write(pending=[second.pending])
    row = Artifact.objects.get()
    assert row.name == "sleep/a.txt" and row.created_at == OLD and row.last_written_at > OLD


def test_database_store__missing_or_malformed_refs_are_reported_not_read():
    with pytest.raises(ArtifactNotFound, match="not in the database"):
        artifact_read(ref=f"{DB_PREFIX}{'0' * 64}")
    with pytest.raises(ArtifactNotFound, match="64 hex digits"):
        artifact_read(ref=f"{DB_PREFIX}../../etc/passwd")
    assert not artifact_verify(ref=f"{DB_PREFIX}{'0' * 64}", sha256="0" * 64)


def test_database_store__approval_reads_the_artifact_from_the_table_and_binds_to_its_hash(settings, artifacts_dir):
    settings.AOL_EXTRA_ADAPTERS = FLOW_ADAPTERS
    control_set_proof_mode(enabled=False, actor="test", reason="testing approval with the database store")
    action = action_enqueue(
        action_type="POST_SOCIAL", payload={"platform": "twitter", "message": "approve me"}, idempotency_key="ap-1"
    )[0]
    tick()
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL
    assert ref_in_database(action.approval_artifact_ref) and Artifact.objects.count() == 1
    review = approval_review(action=action)
    assert review.problem == "" and "approve me" in review.text
    Artifact.objects.update(content=b"tampered\n")
    assert "changed since it was made" in approval_review(action=action).problem
    Artifact.objects.all().delete()
    assert "cannot be read" in approval_review(action=action).problem
    with pytest.raises(ApprovalRefused, match="cannot be read"):
        action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="alice", reason="ok")


def test_database_store__prune_deletes_old_rows_no_open_action_refers_to(settings):
    done = artifact_put(name="post_social/done.txt", content=b"done\n").pending
    kept = artifact_put(name="post_social/dlq.txt", content=b"kept for the DLQ\n").pending
    fresh = artifact_put(name="post_social/fresh.txt", content=b"fresh\n").pending
    artifact_rows_write(pending=[done, kept], written_at=OLD)
    artifact_rows_write(pending=[fresh])
    dead = Action.objects.create(action_type="POST_SOCIAL", payload={}, idempotency_key="dead", status="DLQ")
    ExecutionLog.objects.create(action_id=dead.pk, message="x", artifact_ref=kept.ref, artifact_sha256=kept.sha256)
    dry = retention_prune(dry_run=True)
    assert dry.artifact_rows == 1 and Artifact.objects.count() == 3
    report = retention_prune()
    assert report.artifact_rows == 1 and report.artifact_bytes == len(b"done\n")
    assert set(Artifact.objects.values_list("sha256", flat=True)) == {kept.sha256, fresh.sha256}
    assert "1 database artifacts deleted." in report.summary()


def test_database_store__sizes_count_the_table_and_the_probe_is_the_database(settings):
    artifact_put(name="x.txt", content=b"0123456789")
    artifact_rows_write(pending=[artifact_put(name="x.txt", content=b"0123456789").pending])
    sizes = storage_sizes(max_age_seconds=0)
    assert sizes["artifacts"]["database"]["rows"] == 1
    assert sizes["artifacts"]["database"]["bytes"] >= 10
    settings.AOL_ARTIFACTS_DIR = "/proc/no-such-dir/artifacts"  # never probed with the database store
    probe = artifact_store_probe_detail()
    assert probe.ok and probe.store == "database" and "in the database" in probe.summary
    assert Client().get("/readyz").status_code == 200
    assert [m.id for m in checks.run_checks() if m.id.startswith("orchestration.E02")] == []


def test_artifact_store__an_unknown_store_is_a_check_error_and_refused(settings):
    settings.AOL_ARTIFACT_STORE = "s3"
    errors = [m for m in checks.run_checks() if m.id == "orchestration.E023"]
    assert len(errors) == 1 and "AOL_ARTIFACT_STORE='s3'" in errors[0].msg
    with pytest.raises(ImproperlyConfigured, match="files, database"):
        artifact_put(name="a.txt", content=b"x")
    assert not artifact_store_probe_detail().ok
