"""Recovery of orphaned attempts and the claim's recorded mode (services, in-process, real database)."""

import pytest

from orchestration.models import Action, ActionStatus, ClaimedMode, ExecutionLog
from orchestration.services.claim import action_claim_due
from orchestration.services.enqueue import action_enqueue
from orchestration.services.lease import lease_acquire_or_renew, lease_release
from orchestration.services.results import action_mark_interrupted, action_recover_orphans
from tests.fake_adapters import FAKE_ADAPTERS

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fake_adapters(settings):
    settings.AOL_EXTRA_ADAPTERS = FAKE_ADAPTERS


def tenure(owner: str) -> int:
    return lease_acquire_or_renew(owner=owner, ttl_seconds=30).token


def claim(key: str, action_type: str, *, proof: bool | None, token: int) -> Action:
    action_enqueue(action_type=action_type, payload={}, idempotency_key=key)
    [action] = action_claim_due(owner="a", token=token, limit=1, proof=proof)
    return action


def test_action_claim_due__records_the_mode_of_the_attempt():
    token = tenure("a")
    assert claim("p", "CRASH", proof=True, token=token).claimed_mode == ClaimedMode.PROOF
    assert Action.objects.get(idempotency_key="p").claimed_mode == ClaimedMode.PROOF
    assert claim("r", "CRASH", proof=False, token=token).claimed_mode == ClaimedMode.REAL


def test_action_recover_orphans__unknown_outcome__review_only_for_real_or_unknown_mode_of_non_idempotent():
    old = tenure("a")
    real_unsafe = claim("real-unsafe", "CRASH_REAL", proof=False, token=old)
    unknown_unsafe = claim("unknown-unsafe", "CRASH_REAL", proof=None, token=old)
    proof_unsafe = claim("proof-unsafe", "CRASH_REAL", proof=True, token=old)
    real_safe = claim("real-safe", "CRASH", proof=False, token=old)
    lease_release(owner="a", token=old)
    new = tenure("b")

    report = action_recover_orphans(token=new, actor="b")

    assert sorted(report.review) == sorted([real_unsafe.pk, unknown_unsafe.pk])
    assert sorted(report.retried) == sorted([proof_unsafe.pk, real_safe.pk])
    statuses = dict(Action.objects.values_list("idempotency_key", "status"))
    assert statuses == {
        "real-unsafe": ActionStatus.NEEDS_REVIEW,
        "unknown-unsafe": ActionStatus.NEEDS_REVIEW,
        "proof-unsafe": ActionStatus.RETRY,
        "real-safe": ActionStatus.RETRY,
    }
    review_log = ExecutionLog.objects.get(action_id=real_unsafe.pk)
    assert "worker lost during attempt" in review_log.message and "NEEDS_REVIEW" in review_log.message
    assert not Action.objects.due().filter(status=ActionStatus.NEEDS_REVIEW).exists()


def test_action_mark_interrupted__back_in_the_queue_attempt_not_counted_and_logged():
    token = tenure("a")
    action = claim("k", "CRASH", proof=True, token=token)
    action_mark_interrupted(action=action, token=token, actor="a", reason="kill flag set")
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 0)
    assert "interrupted (kill flag set)" in ExecutionLog.objects.get(action_id=action.pk).message
