"""A full or nearly full artifacts filesystem: the sentinel, /readyz and the status view say so.

The full filesystem is a real 64 KiB tmpfs filled to its last block, on which creating an empty
file still works; "nearly full" is the minimum free space set above what the disk has.
"""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.conftest import ROOT
from tests.filesystems import full_filesystem

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def s010() -> tuple[int, dict]:
    out = StringIO()
    try:
        call_command("check_sentinels", "--json", stdout=out, stderr=StringIO(), no_color=True)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    [check] = [c for c in json.loads(out.getvalue())["checks"] if c["id"] == "orchestration.S010"]
    return code, check


@pytest.fixture
def full_artifacts_dir(artifacts_dir):
    """The test's AOL_ARTIFACTS_DIR on a 64 KiB tmpfs filled to its last block."""
    with full_filesystem(artifacts_dir):
        yield artifacts_dir


@pytest.fixture
def minimum_above_free_space(artifacts_dir, settings) -> int:
    """AOL_ARTIFACTS_MIN_FREE_BYTES set 1 GiB above what the artifacts directory's disk has free."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    stats = os.statvfs(artifacts_dir)
    settings.AOL_ARTIFACTS_MIN_FREE_BYTES = stats.f_bavail * stats.f_frsize + 1024**3
    return settings.AOL_ARTIFACTS_MIN_FREE_BYTES


def test_check_sentinels__artifacts_on_a_full_filesystem__s010_fails_with_no_space(full_artifacts_dir, settings):
    settings.AOL_ARTIFACTS_MIN_FREE_BYTES = 0  # the probe's write alone must catch it
    code, check = s010()
    assert code == 1
    assert check["status"] == "fail"
    assert check["detail"] == f"cannot write to AOL_ARTIFACTS_DIR={full_artifacts_dir}: No space left on device"
    assert "free space" in check["advice"]


def test_readyz__artifacts_on_a_full_filesystem__503_not_writable(full_artifacts_dir, settings, client):
    settings.AOL_ARTIFACTS_MIN_FREE_BYTES = 0
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reason": "artifacts directory not writable"}


def test_status_json__artifacts_on_a_full_filesystem__shows_the_problem(full_artifacts_dir, settings, admin_client):
    settings.AOL_ARTIFACTS_MIN_FREE_BYTES = 0
    client = admin_client
    data = client.get(reverse("orchestration:status_json")).json()["artifacts_dir"]
    assert data["ok"] is False and data["free_bytes"] == 0
    assert data["summary"] == f"cannot write to AOL_ARTIFACTS_DIR={full_artifacts_dir}: No space left on device"
    page = client.get(reverse("orchestration:status")).content.decode()
    assert '<tr id="artifacts-dir" class="warn"><th>Artifacts directory</th>' in page
    assert "No space left on device" in page.split('id="artifacts-dir"')[1].split("</tr>")[0]


def test_check_sentinels__free_space_below_the_minimum__s010_fails_naming_the_setting(
    minimum_above_free_space, artifacts_dir
):
    code, check = s010()
    assert code == 1
    assert check["status"] == "fail"
    assert f"free on the filesystem of AOL_ARTIFACTS_DIR={artifacts_dir}, below the minimum" in check["detail"]
    assert f"AOL_ARTIFACTS_MIN_FREE_BYTES={minimum_above_free_space}" in check["detail"]
    assert "aol_prune" in check["advice"] and "AOL_ARTIFACTS_MIN_FREE_BYTES" in check["advice"]


def test_check_sentinels__as_a_process__minimum_from_the_environment__s010_fails(daemon_env, artifacts_dir):
    artifacts_dir.mkdir(parents=True)
    stats = os.statvfs(artifacts_dir)
    minimum = stats.f_bavail * stats.f_frsize + 1024**3
    done = subprocess.run(
        [sys.executable, "manage.py", "check_sentinels", "--json"],
        cwd=ROOT,
        env={**daemon_env, "AOL_ARTIFACTS_MIN_FREE_BYTES": str(minimum)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    [check] = [c for c in json.loads(done.stdout)["checks"] if c["id"] == "orchestration.S010"]
    assert check["status"] == "fail" and f"AOL_ARTIFACTS_MIN_FREE_BYTES={minimum}" in check["detail"]


def test_readyz__free_space_below_the_minimum__503_saying_so(minimum_above_free_space, client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "reason": "artifacts directory below its minimum free space",
    }


def test_status_json__free_space_below_the_minimum__shows_free_and_minimum(minimum_above_free_space, admin_client):
    data = admin_client.get(reverse("orchestration:status_json")).json()["artifacts_dir"]
    assert data["ok"] is False and data["min_free_bytes"] == minimum_above_free_space
    assert 0 < data["free_bytes"] < minimum_above_free_space
    assert "below the minimum" in data["problem"]


def test_check_sentinels__healthy_artifacts_directory__s010_passes_with_its_free_space(artifacts_dir):
    _, check = s010()
    assert check["status"] == "pass"
    assert check["detail"].startswith(f"{artifacts_dir} is writable; ")
    assert "free (minimum 100.0 MiB, AOL_ARTIFACTS_MIN_FREE_BYTES)" in check["detail"]


def test_database_store__artifacts_dir_on_a_full_filesystem__healthy_and_a_daemon_drains_without_a_block(
    full_artifacts_dir, settings, client, daemon_env, start_daemon
):
    """Invariant (AOL_ARTIFACT_STORE=database): the artifacts directory plays no part, so a full one is no
    problem: S010 passes without probing it, /readyz is 200, and a daemon drains its queue with no BLOCKED
    tick, every artifact in aol_artifacts and none on the full disk."""
    from orchestration.models import Action, ActionStatus, Artifact, TickLedger, TickStatus
    from orchestration.services.enqueue import action_enqueue
    from tests.conftest import wait_until

    settings.AOL_ARTIFACT_STORE = "database"
    settings.AOL_ARTIFACTS_MIN_FREE_BYTES = 0
    code, check = s010()
    assert (code, check["status"]) == (0, "pass") and "no directory to probe" in check["detail"]
    assert client.get("/readyz").status_code == 200
    ids = [
        action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key=f"full-{i}")[0].pk for i in range(5)
    ]
    start_daemon("--proof", env={"AOL_ARTIFACT_STORE": "database", "AOL_ARTIFACTS_MIN_FREE_BYTES": "0"})
    wait_until(lambda: Action.objects.filter(pk__in=ids, status=ActionStatus.SUCCESS).count() == 5, timeout=30)
    assert Artifact.objects.count() == 5
    assert not TickLedger.objects.filter(status=TickStatus.BLOCKED).exists()
    assert not (full_artifacts_dir / "sleep").exists()
