"""Holding a rate-limited account (services/account_limits.py) and the claim's part: deferral and exclusivity."""

import pytest

from orchestration.exceptions import LeaseNotHeld
from orchestration.models import AccountRateLimit, Action, ActionStatus, ClaimedMode, ExecutionLog, Lease
from orchestration.services.account_limits import account_rate_limit_hold
from orchestration.services.claim import action_claim_due
from orchestration.services.enqueue import action_enqueue
from tests.factories import OWNER, hold_lease

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def crm(webhook_settings):
    return webhook_settings


def hook(key: str, account: str | None = None, endpoint: str = "crm") -> Action:
    payload = {"endpoint": endpoint, "event": "lead.created"}
    if account:
        payload["account"] = account
    return action_enqueue(action_type="WEBHOOK", payload=payload, idempotency_key=key)[0]


def claim(token: int, limit: int = 10, **kwargs) -> list[Action]:
    return action_claim_due(owner=OWNER, token=token, limit=limit, proof=False, **kwargs)


def test_hold__attempt_uncounted_the_accounts_waiting_actions_deferred_others_untouched():
    first, second, other, plain = hook("a1", "tenant-a"), hook("a2", "tenant-a"), hook("b1", "tenant-b"), hook("n1")
    token = hold_lease()
    [running] = claim(token, limit=1)
    assert running.pk == first.pk
    hold = account_rate_limit_hold(
        action=running,
        account="tenant-a",
        retry_after_seconds=60,
        error="429 Too Many Requests",
        token=token,
        actor=OWNER,
    )
    assert (hold.key, hold.account, hold.action_type) == ("webhook:crm:tenant-a", "tenant-a", "WEBHOOK")
    for action in (first, second):
        action.refresh_from_db()
        assert (action.status, action.attempts, action.not_before) == (ActionStatus.PENDING, 0, hold.reset_at)
        assert "rate-limited account 'tenant-a'" in action.deferred_note and "429" in action.deferred_note
        assert ExecutionLog.objects.filter(action_id=action.pk, message__contains="deferred until").exists()
    for action in (other, plain):
        action.refresh_from_db()
        assert action.deferred_note == "" and action.status == ActionStatus.PENDING
    assert {a.pk for a in Action.objects.deferred()} == {first.pk, second.pk}


def test_hold__a_later_action_of_the_account_is_deferred_at_claim_not_run_a_proof_claim_is_not_held():
    hook("a1", "tenant-a")
    token = hold_lease()
    [running] = claim(token, limit=1)
    hold = account_rate_limit_hold(
        action=running, account="tenant-a", retry_after_seconds=60, error="429", token=token, actor=OWNER
    )
    later = hook("a-later", "tenant-a")
    assert claim(token) == []
    later.refresh_from_db()
    assert later.not_before == hold.reset_at and later.attempts == 0 and later.deferred_note
    # A PROOF claim touches no platform: the hold does not apply.
    Action.objects.update(not_before=Lease.objects.get().acquired_at)
    proof = action_claim_due(owner=OWNER, token=token, limit=10, proof=True)
    assert {a.claimed_mode for a in proof} == {ClaimedMode.PROOF} and len(proof) == 2


def test_hold__a_cached_hold_that_has_reset_is_dropped_and_the_action_runs():
    action = hook("a1", "tenant-a")
    token = hold_lease()
    stale = AccountRateLimit(
        key="webhook:crm:tenant-a", account="tenant-a", action_type="WEBHOOK", reset_at=action.created_at, note="old"
    )
    holds = {stale.key: stale}
    [claimed] = claim(token, holds=holds)
    assert claimed.pk == action.pk and holds == {}


def test_hold__fenced_a_stale_token_writes_nothing():
    hook("a1", "tenant-a")
    token = hold_lease()
    [running] = claim(token, limit=1)
    Lease.objects.update(token=token + 1)
    with pytest.raises(LeaseNotHeld):
        account_rate_limit_hold(
            action=running, account="tenant-a", retry_after_seconds=5, error="429", token=token, actor=OWNER
        )
    assert not AccountRateLimit.objects.exists()
    assert Action.objects.get().status == ActionStatus.RUNNING


def test_exclusive_claim__never_two_of_one_account_nor_one_already_in_flight():
    hook("a1", "tenant-a"), hook("a2", "tenant-a"), hook("b1", "tenant-b"), hook("n1"), hook("n2")
    token = hold_lease()
    claimed = claim(token, exclusive=frozenset({"webhook:crm:tenant-b"}))
    assert sorted(a.idempotency_key for a in claimed) == ["a1", "n1", "n2"]
    assert not any(a.claimed_in_batch for a in claimed)  # each starts at once: none is a batch member
    assert {a.idempotency_key for a in Action.objects.filter(status=ActionStatus.PENDING, attempts=0)} == {"a2", "b1"}
