"""aol_artifacts move: artifacts and their references go from one store to the other, nothing lost, twice safe."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from orchestration.adapters.artifacts import artifact_path, sha256_bytes
from orchestration.adapters.store import DB_PREFIX, artifact_read, artifact_verify
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.models import Action, ActionStatus, Artifact, ExecutionLog
from orchestration.services.artifacts import artifacts_move
from tests.factories import post_social

pytestmark = pytest.mark.django_db


def drain(count: int) -> list[Action]:
    actions = [post_social(f"move-{n}", message=f"message {n}") for n in range(count)]
    daemon = Daemon(DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01), out=lambda line: None)
    for n in range(count):  # a tick runs at most AOL_MAX_ACTIONS_PER_TICK
        daemon.tick(n)
        if not Action.objects.exclude(status=ActionStatus.SUCCESS).exists():
            break
    for action in actions:
        action.refresh_from_db()
        assert action.status == ActionStatus.SUCCESS
    return actions


def artifact_logs() -> list[ExecutionLog]:
    return list(ExecutionLog.objects.exclude(artifact_ref="").order_by("id"))


def move(*args: str) -> str:
    out = StringIO()
    call_command("aol_artifacts", "move", *args, stdout=out, no_color=True)
    return out.getvalue()


def test_aol_artifacts_move__files_to_database_and_back__refs_rewritten_bytes_identical(artifacts_dir, settings):
    drain(3)
    before = {log.pk: (log.artifact_ref, log.artifact_sha256) for log in artifact_logs()}
    files = sorted(p for p in artifacts_dir.rglob("*.txt"))
    assert len(files) == 3

    dry = move("--to", "database", "--dry-run")
    assert "3 artifacts would be moved to the database (3 references)" in dry
    assert Artifact.objects.count() == 0 and len(list(artifacts_dir.rglob("*.txt"))) == 3

    text = move("--to", "database")
    assert "3 artifacts moved to the database, 3 references updated; 0 already there" in text
    assert "3 old files deleted." in text
    assert "AOL_ARTIFACT_STORE is 'files'" in text  # says the setting still sends new ones to files
    assert list(artifacts_dir.rglob("*.txt")) == []
    for log in artifact_logs():
        old_ref, sha256 = before[log.pk]
        assert log.artifact_ref == f"{DB_PREFIX}{sha256}" and log.artifact_sha256 == sha256
        assert artifact_verify(ref=log.artifact_ref, sha256=sha256)
        assert Artifact.objects.get(sha256=sha256).name == old_ref

    again = move("--to", "database")
    assert "0 artifacts moved to the database, 0 references updated" in again

    settings.AOL_ARTIFACT_STORE = "files"
    back = move("--to", "files")
    assert "3 artifacts moved to files, 3 references updated" in back and "3 old database rows deleted." in back
    assert Artifact.objects.count() == 0
    assert {log.pk: (log.artifact_ref, log.artifact_sha256) for log in artifact_logs()} == before
    for ref, sha256 in before.values():
        assert sha256_bytes(artifact_path(ref).read_bytes()) == sha256


def test_aol_artifacts_move__missing_and_changed_files_are_left_and_counted_the_rest_moves(artifacts_dir):
    drain(3)
    first, second, third = artifact_logs()
    artifact_path(first.artifact_ref).unlink()
    artifact_path(second.artifact_ref).write_bytes(b"edited by hand\n")
    text = move("--to", "database")
    assert "1 artifacts moved to the database, 1 references updated" in text
    assert "1 missing, 1 changed" in text
    assert (
        f"left (missing): {first.artifact_ref}" in text
        and f"left (changed since logged): {second.artifact_ref}" in text
    )
    refs = [log.artifact_ref for log in artifact_logs()]
    assert refs == [first.artifact_ref, second.artifact_ref, f"{DB_PREFIX}{third.artifact_sha256}"]
    assert artifact_path(second.artifact_ref).read_bytes() == b"edited by hand\n"  # never deleted


def test_aol_artifacts_move__an_approval_ref_on_the_action_moves_too(artifacts_dir):
    (action,) = drain(1)
    log = artifact_logs()[0]
    Action.objects.filter(pk=action.pk).update(
        status=ActionStatus.AWAITING_APPROVAL,
        approval_artifact_ref=log.artifact_ref,
        approval_sha256=log.artifact_sha256,
    )
    move("--to", "database")
    action.refresh_from_db()
    assert action.approval_artifact_ref == f"{DB_PREFIX}{log.artifact_sha256}"
    assert sha256_bytes(artifact_read(ref=action.approval_artifact_ref)) == log.artifact_sha256


def test_aol_artifacts_move__interrupted_after_some_batches__rerun_finishes_nothing_lost(artifacts_dir, monkeypatch):
    drain(4)
    before = {log.pk: log.artifact_sha256 for log in artifact_logs()}
    import orchestration.services.artifacts as service

    calls = {"n": 0}
    real = service._move_batch

    def die_on_second_batch(**kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(**kwargs)

    monkeypatch.setattr(service, "_move_batch", die_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        artifacts_move(to="database", batch_size=2)
    monkeypatch.undo()
    # Half moved, nothing deleted: every reference is readable where it points.
    logs = artifact_logs()
    assert sum(log.artifact_ref.startswith(DB_PREFIX) for log in logs) == 2
    assert len(list(artifacts_dir.rglob("*.txt"))) == 4
    assert all(artifact_verify(ref=log.artifact_ref, sha256=log.artifact_sha256) for log in logs)
    report = artifacts_move(to="database", batch_size=2)
    assert (report.moved, report.refs_updated, report.sources_deleted) == (2, 2, 4)
    assert {log.pk: log.artifact_sha256 for log in artifact_logs()} == before
    assert all(log.artifact_ref == f"{DB_PREFIX}{log.artifact_sha256}" for log in artifact_logs())


def test_aol_artifacts_move__bad_usage_is_refused_nothing_changes(artifacts_dir):
    drain(1)
    with pytest.raises(CommandError, match="invalid choice: 's3'"):
        call_command("aol_artifacts", "move", "--to", "s3")
    with pytest.raises(CommandError, match="--to"):
        call_command("aol_artifacts", "move")
    assert Artifact.objects.count() == 0 and not artifact_logs()[0].artifact_ref.startswith(DB_PREFIX)
