"""Failover across hosts, simulated on one machine: the standby and the web server have their OWN artifacts directory.

With AOL_ARTIFACT_STORE=database the second "host" finishes the drain and reads every artifact the
first wrote (the approval page included). With files it cannot: what the first host wrote stays on
its disk, which these tests pin down so the difference is documented by a test (docs/guarantees.md).
"""

import signal

import pytest
from django.test import Client

from orchestration.adapters.store import DB_PREFIX, artifact_verify
from orchestration.models import Action, ActionStatus, Artifact, ExecutionLog
from orchestration.services.control import control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.conftest import test_database_url, wait_until
from tests.faults.conftest import assert_nothing_running, success_logs
from tests.web_server import WebServer, web_env

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

DRAIN = 12
SLEEP_SECONDS = 0.25


def sleep_action(key: str, **extra) -> Action:
    return action_enqueue(action_type="SLEEP", payload={"seconds": SLEEP_SECONDS}, idempotency_key=key, **extra)[0]


def files_in(directory) -> list:
    return (
        sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
        if directory.exists()
        else []
    )


@pytest.mark.parametrize("store", ["database", "files"])
def test_failover_hosts__standby_with_its_own_artifacts_dir_takes_over_mid_drain(
    store, start_daemon, tmp_path, django_user_model
):
    """Invariant (database): host A parks an action for approval and drains part of the queue, is SIGKILLed
    mid-drain; standby B (another AOL_ARTIFACTS_DIR) takes over; every action ends SUCCESS exactly once with
    one artifact in aol_artifacts that verifies against its logged SHA-256, no file is written on either host,
    and a web server with B's directory shows A's approval artifact as verified.
    Files: the same drain succeeds exactly once (the queue is in the database), but artifacts are split between
    the two directories, and B's web server cannot read A's approval artifact."""
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    env_a = {"AOL_ARTIFACT_STORE": store, "AOL_ARTIFACTS_DIR": str(host_a)}
    env_b = {"AOL_ARTIFACT_STORE": store, "AOL_ARTIFACTS_DIR": str(host_b)}

    # REAL mode: a gated action runs in PROOF on host A and waits for approval with its artifact.
    control_set_proof_mode(enabled=False, actor="test", reason="park one action for approval")
    gated = sleep_action("hosts-gated", requires_approval=True)
    daemon_a = start_daemon(env=env_a)
    wait_until(
        lambda: Action.objects.filter(pk=gated.pk, status=ActionStatus.AWAITING_APPROVAL).exists(),
        message="the gated action awaiting approval",
    )
    control_set_proof_mode(enabled=True, actor="test", reason="drain in PROOF")
    actions = [sleep_action(f"hosts-{n}") for n in range(DRAIN)]
    daemon_b = start_daemon("--standby", env=env_b)
    daemon_b.wait_for_output("Standby: lease held by")
    wait_until(
        lambda: (
            Action.objects.filter(pk__in=[a.pk for a in actions], status=ActionStatus.SUCCESS).count() >= 3
            and Action.objects.filter(status=ActionStatus.RUNNING).exists()
        ),
        message="host A mid-drain",
    )
    daemon_a.signal(signal.SIGKILL)
    daemon_a.wait()
    done_by_a = set(
        ExecutionLog.objects.filter(actor=daemon_a.owner(), level="INFO", artifact_ref__gt="").values_list(
            "action_id", flat=True
        )
    )

    wait_until(
        lambda: Action.objects.filter(pk__in=[a.pk for a in actions], status=ActionStatus.SUCCESS).count() == DRAIN,
        timeout=60,
        message="the drain finished by host B",
    )
    assert_nothing_running()
    owner_b = daemon_b.owner()
    assert done_by_a - {gated.pk} and ExecutionLog.objects.filter(actor=owner_b, level="INFO").exists()
    logs = {}
    for action in actions:
        [success] = success_logs(action)  # SUCCESS exactly once
        logs[action.pk] = success
    gated.refresh_from_db()

    # The approval page, served by a second web process that has host B's directory.
    staff = django_user_model.objects.create_user("approver", password="x" * 12, is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    server = WebServer(web_env(test_database_url(), **env_b), tmp_path / "web-host-b.log")
    try:
        status, html, _ = server.request(
            f"/console/approvals/{gated.pk}/", headers={"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
        )
    finally:
        server.stop()
    assert status == 200, server.output()

    if store == "database":
        assert gated.approval_artifact_ref.startswith(DB_PREFIX)
        assert 'id="artifact-verified"' in html and "SLEEP drill" in html and gated.approval_sha256 in html
        for success in logs.values():
            assert success.artifact_ref == f"{DB_PREFIX}{success.artifact_sha256}"
            assert artifact_verify(ref=success.artifact_ref, sha256=success.artifact_sha256)
        # One row per action (each action's bytes name its id), the gated one's included; no file anywhere.
        assert Artifact.objects.count() == DRAIN + 1
        assert files_in(host_a) == [] and files_in(host_b) == []
    else:
        assert "cannot be read" in html and 'id="artifact-verified"' not in html
        on_a = {p.relative_to(host_a).as_posix() for p in files_in(host_a)}
        on_b = {p.relative_to(host_b).as_posix() for p in files_in(host_b)}
        assert gated.approval_artifact_ref in on_a
        for success in logs.values():
            # The record is right, but the bytes are on whichever host ran the attempt that succeeded.
            assert success.artifact_ref in (on_a if success.action_id in done_by_a else on_b)
        assert on_a - {gated.approval_artifact_ref} and on_b  # split between the hosts
        assert Artifact.objects.count() == 0
