"""PROOF artifacts: one name per action, written once and never replaced, verified by SHA-256,
transient errors on an unwritable disk."""

import hashlib

import pytest

from orchestration.adapters.artifacts import (
    artifact_ensure,
    artifact_verify,
    proof_artifact_ref,
)
from orchestration.exceptions import ArtifactConflict, TransientAdapterError
from orchestration.models import Action
from orchestration.services.queue import action_enqueue_many
from tests.factories import read_only_directory

#: Key 2 is spelled like key 1's cleaned file-name part ("a_b-" and the first 10 hex of sha256("a b")).
COLLIDING_KEYS = ("a b", f"a_b-{hashlib.sha256(b'a b').hexdigest()[:10]}")


def test_artifact_ensure__same_content_twice__second_call_finds_it_and_leaves_the_file_alone(artifacts_dir):
    digest, found = artifact_ensure(ref="x/one.txt", content=b"hello")
    path = artifacts_dir / "x" / "one.txt"
    before = path.stat()
    assert (digest, found) == (hashlib.sha256(b"hello").hexdigest(), False)
    assert artifact_ensure(ref="x/one.txt", content=b"hello") == (digest, True)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert artifact_verify(ref="x/one.txt", sha256=digest)


def test_artifact_ensure__other_content_under_the_name__refused_permanently_and_the_file_kept(artifacts_dir):
    old_digest, _ = artifact_ensure(ref="x/one.txt", content=b"old")
    with pytest.raises(ArtifactConflict) as error:
        artifact_ensure(ref="x/one.txt", content=b"new")
    assert error.value.permanent
    message = str(error.value)
    assert "x/one.txt already exists with other content" in message and "never replaced" in message
    assert old_digest in message and hashlib.sha256(b"new").hexdigest() in message
    assert (artifacts_dir / "x" / "one.txt").read_bytes() == b"old"
    assert [p.name for p in (artifacts_dir / "x").iterdir()] == ["one.txt"]  # no temporary file left
    assert artifact_verify(ref="x/one.txt", sha256=old_digest)


def test_artifact_ensure__read_only_directory__transient_error_naming_the_directory(artifacts_dir):
    artifacts_dir.mkdir()
    with read_only_directory(artifacts_dir), pytest.raises(TransientAdapterError) as error:
        artifact_ensure(ref="x/one.txt", content=b"hello")
    assert str(artifacts_dir) in str(error.value) and "writable" in str(error.value)
    assert not error.value.permanent


@pytest.mark.django_db
def test_proof_artifact_ref__keys_spelling_each_others_name_in_one_bulk_enqueue__different_names():
    report = action_enqueue_many(
        items=[
            {"action_type": "POST_SOCIAL", "payload": {"platform": "x", "message": m}, "idempotency_key": k}
            for k, m in zip(COLLIDING_KEYS, ("FIRST", "SECOND"), strict=True)
        ]
    )
    first, second = Action.objects.filter(pk__in=report.created).order_by("pk")
    assert first.created_at == second.created_at  # one bulk enqueue: one creation time
    refs = [proof_artifact_ref(action=action, folder="post_social") for action in (first, second)]
    assert refs[0] != refs[1]
    assert all(f"_{action.pk}_" in ref for action, ref in zip((first, second), refs, strict=True))
