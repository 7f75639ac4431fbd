"""AOL_REAL_CONCURRENCY and per-account 429 deferral, with a real run_aol_daemon and a slow webhook receiver.

The receiver (tests/webhook_server.py) records when each request started and ended and for which
account (the body's ``account``), so "at most N in flight" and "never two of one account at once" are
read from what it saw, not from the daemon's word.
"""

import json

import pytest

from orchestration.models import AccountRateLimit, Action, ActionStatus, ExecutionLog, TickLedger, TickStatus
from orchestration.services.control import (
    control_kill,
    control_pause,
    control_resume,
    control_revive,
    control_set_proof_mode,
)
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until
from tests.webhook_server import SECRET, SECRET_ENV, max_in_flight, overlaps

pytestmark = pytest.mark.django_db(transaction=True)


def enqueue(key: str, account: str | None = None) -> Action:
    payload = {"endpoint": "crm", "event": "lead.created", "data": {"n": key}}
    if account:
        payload["account"] = account
    return action_enqueue(action_type="WEBHOOK", payload=payload, idempotency_key=key)[0]


@pytest.fixture
def real_env(webhook_server, webhook_settings) -> dict[str, str]:
    """A REAL daemon's environment: the receiver as endpoint ``crm``, 4 attempts at once."""
    control_set_proof_mode(enabled=False, actor="ops", reason="REAL concurrency test")
    return {
        "AOL_WEBHOOKS": json.dumps({"crm": webhook_server.endpoint()}),
        SECRET_ENV: SECRET,
        "AOL_REAL_CONCURRENCY": "4",
        "AOL_MAX_ACTIONS_PER_TICK": "16",
    }


def successes(action: Action) -> int:
    return ExecutionLog.objects.filter(action_id=action.pk, message__startswith="REAL: POSTed").count()


def assert_each_stored_once(actions: list[Action], webhook_server) -> None:
    """Every action SUCCESS with one success log, and the receiver stored each event exactly once."""
    for action in actions:
        action.refresh_from_db()
        assert action.status == ActionStatus.SUCCESS, action.last_error
        assert successes(action) == 1
    ids = [event["id"] for event in webhook_server.events]
    assert len(ids) == len(set(ids)) == len(actions)


def test_concurrency__4_at_most_in_flight_and_one_accounts_events_never_overlap(start_daemon, webhook_server, real_env):
    webhook_server.delay_seconds = 0.5
    actions = []
    for i in range(4):  # interleaved: each claim sees both accounts and events without one
        actions += [enqueue(f"a-{i}", "tenant-a"), enqueue(f"b-{i}", "tenant-b"), enqueue(f"n-{i}"), enqueue(f"m-{i}")]
    daemon = start_daemon(env=real_env)
    wait_until(
        lambda: Action.objects.filter(status=ActionStatus.SUCCESS).count() == len(actions),
        timeout=60,
        message="every event sent",
    )
    assert_each_stored_once(actions, webhook_server)
    assert max_in_flight(webhook_server.timeline) == 4, webhook_server.timeline
    assert overlaps(webhook_server.timeline) == []
    tenant_a = [span for span in webhook_server.timeline if span.account == "tenant-a"]
    assert len(tenant_a) == 4
    assert SECRET not in daemon.output()


def test_concurrency__kill_with_4_in_flight__nothing_lost_or_doubled_after_revive(
    start_daemon, webhook_server, real_env
):
    """The attempts in flight when the kill flag is set finish and are recorded once; nothing else starts;
    after the revive every event is stored exactly once and no request was ever sent twice."""
    webhook_server.delay_seconds = 1.0
    actions = [enqueue(f"k-{i}-{account}", account) for i in range(2) for account in ("t1", "t2", "t3", "t4")]
    daemon = start_daemon("--wait-when-killed", env=real_env)
    wait_until(lambda: len(webhook_server.requests) >= 4, message="4 requests in flight")

    control_kill(actor="test", reason="kill drill with 4 in flight")
    wait_until(lambda: TickLedger.objects.filter(status=TickStatus.KILLED).exists(), message="a KILLED tick")
    wait_until(lambda: not Action.objects.filter(status=ActionStatus.RUNNING).exists(), message="nothing running")
    daemon.wait_for_output("Kill flag set: nothing runs")

    sent = len(webhook_server.requests)
    done = Action.objects.filter(status=ActionStatus.SUCCESS).count()
    assert sent == done >= 4  # what was in flight was recorded, and nothing started after the kill
    assert Action.objects.filter(status=ActionStatus.PENDING, attempts=0).count() == len(actions) - done

    control_revive(actor="test", reason="drill over")
    wait_until(
        lambda: Action.objects.filter(status=ActionStatus.SUCCESS).count() == len(actions),
        timeout=60,
        message="every event sent after the revive",
    )
    assert_each_stored_once(actions, webhook_server)
    assert len(webhook_server.requests) == len(actions)  # no request sent twice
    assert overlaps(webhook_server.timeline) == []


def test_concurrency__pause_stops_new_claims_while_two_accounts_are_in_flight(start_daemon, webhook_server, real_env):
    """8 events over 2 accounts with 4 slots: 2 in flight (one per account). A pause lets those 2 finish
    and starts nothing more; after the resume the other 6 run, still one per account at a time."""
    webhook_server.delay_seconds = 1.0
    actions = [enqueue(f"p-{i}-{account}", account) for i in range(4) for account in ("tenant-a", "tenant-b")]
    start_daemon(env=real_env)
    wait_until(lambda: len(webhook_server.requests) >= 2, message="2 requests in flight")
    control_pause(actor="test", reason="pause drill")
    wait_until(lambda: TickLedger.objects.filter(status=TickStatus.PAUSED).exists(), message="a PAUSED tick")
    wait_until(lambda: not Action.objects.filter(status=ActionStatus.RUNNING).exists(), message="nothing running")

    assert len(webhook_server.requests) == 2
    assert Action.objects.filter(status=ActionStatus.SUCCESS).count() == 2
    assert Action.objects.filter(status=ActionStatus.PENDING, attempts=0).count() == 6

    control_resume(actor="test", reason="pause drill over")
    wait_until(
        lambda: Action.objects.filter(status=ActionStatus.SUCCESS).count() == len(actions),
        timeout=60,
        message="every event sent after the resume",
    )
    assert_each_stored_once(actions, webhook_server)
    assert overlaps(webhook_server.timeline) == []


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_rate_limited_account__its_actions_wait_for_the_reset_uncounted_and_others_run_on(
    start_daemon, webhook_server, real_env, concurrency
):
    """A 429 with Retry-After for tenant-a: that attempt goes back uncounted, every waiting tenant-a event
    and one enqueued later are deferred to the reset (shown on the action), tenant-b's run meanwhile,
    and after the reset each event is stored once with one counted attempt."""
    webhook_server.rate_limited = {"tenant-a": [1, 4]}
    # tenant-b first: with one attempt at a time the next claim is a batch holding tenant-a's two events,
    # and the one not yet started when the other meets the 429 must wait too.
    first = [enqueue(f"r-{i}-{account}", account) for i in range(2) for account in ("tenant-b", "tenant-a")]
    daemon = start_daemon(env={**real_env, "AOL_REAL_CONCURRENCY": concurrency})
    hold = wait_until(lambda: AccountRateLimit.objects.first(), message="tenant-a held")
    assert hold.key == "webhook:crm:tenant-a" and hold.account == "tenant-a"
    later = enqueue("r-later-tenant-a", "tenant-a")
    wait_until(
        lambda: Action.objects.filter(payload__account="tenant-b", status=ActionStatus.SUCCESS).count() == 2,
        message="tenant-b's events sent meanwhile",
    )
    wait_until(lambda: Action.objects.get(pk=later.pk).deferred_note, message="the later event deferred at claim")
    # What the 429 wrote (the hold, the notes, the logs) names the account and the answer, never the secret.
    assert SECRET not in hold.note and SECRET_ENV not in hold.note
    assert not ExecutionLog.objects.filter(message__contains=SECRET).exists()
    for action in Action.objects.filter(payload__account="tenant-a"):
        assert action.status == ActionStatus.PENDING and action.attempts == 0, (action.status, action.last_error)
        assert action.not_before == hold.reset_at
        assert "rate-limited account 'tenant-a'" in action.deferred_note and "429" in action.deferred_note
    assert [span.account for span in webhook_server.timeline].count("tenant-a") == 1  # only the 429

    wait_until(
        lambda: Action.objects.filter(status=ActionStatus.SUCCESS).count() == 5,
        timeout=60,
        message="tenant-a's events sent after the reset",
    )
    actions = [*first, later]
    assert_each_stored_once(actions, webhook_server)
    for action in Action.objects.filter(payload__account="tenant-a"):
        assert action.attempts == 1
        sent = ExecutionLog.objects.get(action_id=action.pk, message__startswith="REAL: POSTed")
        assert sent.ts >= hold.reset_at  # not before the reset (the database and the daemon share this host)
    assert overlaps(webhook_server.timeline) == []
    assert SECRET not in daemon.output()
