"""PROOF artifacts: written once per key, verified by SHA-256, transient errors on an unwritable disk."""

import hashlib

import pytest

from orchestration.adapters.artifacts import artifact_ensure, artifact_verify
from orchestration.exceptions import ArtifactStoreUnavailable, TransientAdapterError
from tests.factories import read_only_directory


def test_artifact_ensure__same_content_twice__second_call_finds_it_and_leaves_the_file_alone(artifacts_dir):
    digest, found = artifact_ensure(ref="x/one.txt", content=b"hello")
    path = artifacts_dir / "x" / "one.txt"
    before = path.stat()
    assert (digest, found) == (hashlib.sha256(b"hello").hexdigest(), False)
    assert artifact_ensure(ref="x/one.txt", content=b"hello") == (digest, True)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert artifact_verify(ref="x/one.txt", sha256=digest)


def test_artifact_ensure__other_content_under_the_name__replaced_atomically(artifacts_dir):
    artifact_ensure(ref="x/one.txt", content=b"old")
    digest, found = artifact_ensure(ref="x/one.txt", content=b"new")
    assert not found and (artifacts_dir / "x" / "one.txt").read_bytes() == b"new"
    assert [p.name for p in (artifacts_dir / "x").iterdir()] == ["one.txt"]  # no temporary file left
    assert artifact_verify(ref="x/one.txt", sha256=digest)


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
