"""Small builders for test data, going through the real services where they exist."""

import os
import shutil
import subprocess
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from orchestration.adapters.artifacts import artifact_path, artifact_write
from orchestration.models import Action, ActionStatus, ExecutionLog, TickLedger
from orchestration.services.enqueue import action_enqueue
from orchestration.services.lease import lease_acquire_or_renew
from orchestration.services.logs import log_write

OWNER = "test-host:1"


def post_social(key: str | None = None, message: str = "hello from AICMO", **extra):
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "twitter", "message": message, **extra},
        idempotency_key=key,
    )
    return action


def hold_lease(owner: str = OWNER, ttl_seconds: float = 30) -> int:
    """Acquire the lease for ``owner`` and return its token."""
    result = lease_acquire_or_renew(owner=owner, ttl_seconds=ttl_seconds)
    assert result.ok, result.reason
    return result.token


def data_statements(captured) -> list[str]:
    """The first keyword of each captured statement, leaving out transaction control."""
    control = {"SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"}
    keywords = [query["sql"].split()[0].upper() for query in captured.captured_queries]
    return [keyword for keyword in keywords if keyword not in control]


@contextmanager
def read_only_directory(path: Path):
    """Make ``path`` unwritable for the duration, even for root (chmod does not stop root; chattr +i does)."""
    root = os.geteuid() == 0
    if root and shutil.which("chattr") is None:
        pytest.fail("running as root without chattr (e2fsprogs): cannot make a directory read-only")
    subprocess.run(["chattr", "+i", str(path)], check=True) if root else path.chmod(0o555)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True) if root else path.chmod(0o755)


# --- aged records for the retention tests ------------------------------------------------------------------

#: Older than every default retention.
OLD = timezone.now() - timedelta(days=90)


def action_with_status(status: str, *, old: bool = True, n: int = 0) -> Action:
    action, _ = action_enqueue(
        action_type="POST_SOCIAL", payload={"platform": "twitter", "message": f"{status} {n}"}, idempotency_key=None
    )
    fields = {"status": status, "lease_token": 1 if status == ActionStatus.RUNNING else None}
    if old:
        fields.update(created_at=OLD, updated_at=OLD)
    Action.objects.filter(pk=action.pk).update(**fields)
    return action


def old_log(**fields) -> ExecutionLog:
    entry = log_write(message="something happened", **fields)
    ExecutionLog.objects.filter(pk=entry.pk).update(ts=OLD)
    return entry


def old_tick() -> TickLedger:
    return TickLedger.objects.create(started_at=OLD, finished_at=OLD, status="SUCCESS")


def aged_artifact(ref: str, *, old: bool = True) -> str:
    artifact_write(ref=ref, content=ref.encode())
    if old:
        os.utime(artifact_path(ref), (OLD.timestamp(), OLD.timestamp()))
    return ref
