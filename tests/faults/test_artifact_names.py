"""Artifact names are the action's own: crafted keys cannot make two actions share a file, and a
name already holding other content is never overwritten (real daemon processes)."""

import hashlib
import json

import pytest
from django.core.management import call_command

from orchestration.adapters.artifacts import artifact_path, proof_artifact_ref
from orchestration.adapters.store import artifact_read
from orchestration.models import Action, ActionStatus
from tests.conftest import wait_until
from tests.factories import post_social
from tests.faults.conftest import (
    artifact_files,
    assert_nothing_running,
    both_stores,
    stored_artifacts,
    stored_sha256,
    success_logs,
)

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

#: Key 2 is spelled like key 1's cleaned file-name part ("a_b-" and the first 10 hex of sha256("a b")).
COLLIDING_KEYS = ("a b", f"a_b-{hashlib.sha256(b'a b').hexdigest()[:10]}")


@both_stores
def test_daemon__keys_spelling_each_others_name_from_one_aol_enqueue_file__two_files_each_matching_its_success(
    start_daemon, artifacts_dir, tmp_path, artifact_store
):
    """Invariant: every SUCCESS row's SHA-256 is the SHA-256 of its own artifact file, even for two
    actions of one bulk enqueue (one creation time) whose keys clean to the same file-name part."""
    lines = tmp_path / "collide.jsonl"
    lines.write_text(
        "".join(
            json.dumps(
                {"action_type": "POST_SOCIAL", "payload": {"platform": "x", "message": message}, "idempotency_key": key}
            )
            + "\n"
            for key, message in zip(COLLIDING_KEYS, ("FIRST message", "SECOND message"), strict=True)
        )
    )
    call_command("aol_enqueue", "--from-file", str(lines))
    actions = list(Action.objects.order_by("pk"))
    assert [a.idempotency_key for a in actions] == list(COLLIDING_KEYS)
    assert actions[0].created_at == actions[1].created_at

    start_daemon("--proof")
    wait_until(lambda: Action.objects.filter(status=ActionStatus.SUCCESS).count() == 2, message="both actions SUCCESS")

    stored = stored_artifacts(artifacts_dir, "post_social")
    assert len(stored) == 2
    for action, message in zip(actions, ("FIRST message", "SECOND message"), strict=True):
        [log] = success_logs(action)
        assert log.artifact_ref in stored
        assert stored_sha256(log.artifact_ref) == log.artifact_sha256
        text = artifact_read(ref=log.artifact_ref).decode()
        assert f"idempotency_key: {action.idempotency_key}\n" in text
        assert text.endswith(f"{message}\n")
    assert_nothing_running()


def test_daemon__artifact_name_holding_other_content__action_dead_lettered_naming_the_conflict_file_kept(
    start_daemon, artifacts_dir
):
    """Invariant: an artifact file is never replaced. An attempt that finds its name holding other
    bytes fails permanently (DLQ, not retried) with a message naming the file and both hashes."""
    action = post_social("taken-name")
    ref = proof_artifact_ref(action=action, folder="post_social")
    squatter = artifact_path(ref)
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(b"someone else's bytes\n")
    other = hashlib.sha256(b"someone else's bytes\n").hexdigest()

    start_daemon("--proof")
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.DLQ, message="action in the DLQ")

    action.refresh_from_db()
    assert action.attempts == 1
    assert f"artifact {ref} already exists with other content (sha256 {other}" in action.last_error
    assert "never replaced" in action.last_error
    assert squatter.read_bytes() == b"someone else's bytes\n"
    assert success_logs(action) == []
    assert artifact_files(artifacts_dir, "post_social") == [squatter]


@pytest.mark.parametrize("artifact_store", ["database"], indirect=True)
def test_daemon__database_store__a_file_squatting_the_name_is_not_looked_at_the_action_succeeds(
    start_daemon, artifacts_dir, artifact_store
):
    """Invariant (AOL_ARTIFACT_STORE=database): artifacts are keyed by their SHA-256, not by a name in the
    directory, so a file already holding the action's name is neither read nor replaced; the action succeeds."""
    action = post_social("taken-name")
    squatter = artifact_path(proof_artifact_ref(action=action, folder="post_social"))
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(b"someone else's bytes\n")

    start_daemon("--proof")
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, message="action SUCCESS")

    [log] = success_logs(action)
    assert stored_sha256(log.artifact_ref) == log.artifact_sha256
    assert squatter.read_bytes() == b"someone else's bytes\n"
    assert artifact_files(artifacts_dir, "post_social") == [squatter]
