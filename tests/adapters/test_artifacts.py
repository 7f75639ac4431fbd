"""PROOF artifacts: one name per action, written once and never replaced, verified by SHA-256,
transient errors on an unwritable disk; the probe of the artifacts directory."""

import hashlib
import os

import pytest

from orchestration.adapters.artifacts import (
    artifact_ensure,
    artifact_verify,
    artifacts_dir_probe,
    artifacts_dir_probe_detail,
    proof_artifact_ref,
)
from orchestration.exceptions import ArtifactConflict, ArtifactStoreUnavailable, TransientAdapterError
from orchestration.models import Action
from orchestration.services.enqueue import action_enqueue_many
from tests.factories import read_only_directory
from tests.filesystems import full_filesystem

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


def test_artifact_ensure__directory_unusable__store_unavailable_not_the_actions_fault(artifacts_dir, settings):
    """Read-only, or under a file (missing and cannot be created): the store is out, whatever the action."""
    artifacts_dir.mkdir()
    with read_only_directory(artifacts_dir), pytest.raises(ArtifactStoreUnavailable) as error:
        artifact_ensure(ref="x/one.txt", content=b"hello")
    assert str(artifacts_dir) in str(error.value)
    (artifacts_dir.parent / "file").write_text("")
    settings.AOL_ARTIFACTS_DIR = artifacts_dir.parent / "file" / "artifacts"
    with pytest.raises(ArtifactStoreUnavailable, match="Not a directory"):
        artifact_ensure(ref="x/one.txt", content=b"hello")


def test_artifact_ensure__error_of_this_name_only__an_ordinary_transient_error(artifacts_dir):
    with pytest.raises(TransientAdapterError, match="too long") as error:
        artifact_ensure(ref="x/" + "n" * 300 + ".txt", content=b"hello")
    assert not isinstance(error.value, ArtifactStoreUnavailable)


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


def test_artifacts_dir_probe__healthy_directory__passes_with_its_free_space_and_leaves_no_file(artifacts_dir):
    probe = artifacts_dir_probe_detail()
    assert artifacts_dir_probe() == "" and probe.ok
    assert probe.free_bytes and probe.free_bytes >= probe.min_free_bytes == 100 * 1024 * 1024
    assert probe.summary.startswith("writable; ") and "AOL_ARTIFACTS_MIN_FREE_BYTES" in probe.summary
    assert list(artifacts_dir.iterdir()) == []


def test_artifacts_dir_probe__a_full_filesystem_fails_though_an_empty_file_fits(artifacts_dir, settings):
    settings.AOL_ARTIFACTS_MIN_FREE_BYTES = 0  # the write alone must catch it
    with full_filesystem(artifacts_dir):
        (artifacts_dir / "empty").touch()  # what the probe used to write: needs no free block
        problem = artifacts_dir_probe()
        assert problem == f"cannot write to AOL_ARTIFACTS_DIR={artifacts_dir}: No space left on device"
        assert artifacts_dir_probe_detail().public_reason == "artifacts directory not writable"
        assert sorted(p.name for p in artifacts_dir.iterdir()) == ["empty", "filler.bin"]  # probe file removed


def test_artifacts_dir_probe__below_the_minimum_free_space__fails_naming_the_setting(artifacts_dir, settings):
    stats = os.statvfs(artifacts_dir.parent)
    minimum = stats.f_bavail * stats.f_frsize + 1024**3
    settings.AOL_ARTIFACTS_MIN_FREE_BYTES = minimum
    probe = artifacts_dir_probe_detail()
    assert probe.kind == "low_space" and not probe.ok
    assert f"free on the filesystem of AOL_ARTIFACTS_DIR={artifacts_dir}, below the minimum" in probe.problem
    assert f"(AOL_ARTIFACTS_MIN_FREE_BYTES={minimum})" in probe.problem
    assert probe.public_reason == "artifacts directory below its minimum free space"
