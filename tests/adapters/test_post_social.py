"""POST_SOCIAL and the adapter registry: validation, PROOF artifacts, REAL refusal."""

import hashlib

import pytest

from orchestration.adapters import ActionAdapter, adapter_get, adapters_all
from orchestration.adapters.artifacts import artifact_path, artifact_verify, safe_filename_part
from orchestration.exceptions import RealRunUnconfigured, UnknownActionType
from tests.factories import post_social

pytestmark = pytest.mark.django_db


def test_registry__every_action_type_has_an_adapter_that_declares_its_capabilities():
    assert "POST_SOCIAL" in adapters_all()
    for action_type, adapter in adapters_all().items():
        assert isinstance(adapter, ActionAdapter)
        assert adapter.action_type == action_type
        assert isinstance(adapter.is_idempotent, bool) and isinstance(adapter.supports_real, bool)
        assert adapter.description


def test_adapter_get__unknown_type_lists_the_known_ones():
    with pytest.raises(UnknownActionType, match="known types: .*POST_SOCIAL"):
        adapter_get("SEND_FAX")


def test_post_social__proof_writes_an_artifact_whose_sha256_is_returned(artifacts_dir):
    action = post_social("launch/001", message="Big news today")
    result = adapter_get("POST_SOCIAL").execute(action, proof=True)
    path = artifact_path(result.artifact_ref)
    assert path.parent == artifacts_dir / "post_social"
    assert path.name.endswith(f"_{safe_filename_part('launch/001')}.txt")
    data = path.read_bytes()
    assert result.artifact_sha256 == hashlib.sha256(data).hexdigest()
    assert b"Big news today" in data and b"nothing was posted" in data
    assert artifact_verify(ref=result.artifact_ref, sha256=result.artifact_sha256)
    assert not list(path.parent.glob(".tmp-*"))  # the temporary file was renamed into place


def test_post_social__rerun_for_the_same_action_writes_no_second_file(artifacts_dir):
    action = post_social("k")
    adapter = adapter_get("POST_SOCIAL")
    first = adapter.execute(action, proof=True)
    second = adapter.execute(action, proof=True)
    assert (first.artifact_ref, first.artifact_sha256) == (second.artifact_ref, second.artifact_sha256)
    assert len(list((artifacts_dir / "post_social").iterdir())) == 1


def test_post_social__real_mode_refuses_and_says_what_to_configure():
    action = post_social("k")
    with pytest.raises(RealRunUnconfigured, match="cannot run in REAL mode.*keep PROOF mode on"):
        adapter_get("POST_SOCIAL").execute(action, proof=False)


def test_artifact_verify__detects_a_changed_file():
    action = post_social("k")
    result = adapter_get("POST_SOCIAL").execute(action, proof=True)
    artifact_path(result.artifact_ref).write_text("tampered")
    assert not artifact_verify(ref=result.artifact_ref, sha256=result.artifact_sha256)


def test_safe_filename_part__keeps_distinct_keys_distinct():
    assert safe_filename_part("plain-key_1") == "plain-key_1"
    assert safe_filename_part("a/b") != safe_filename_part("a_b")
    assert "/" not in safe_filename_part("../../etc/passwd") and ".." not in safe_filename_part("../x")


def test_artifact_path__refuses_references_outside_the_artifacts_dir():
    with pytest.raises(ValueError):
        artifact_path("../outside.txt")
