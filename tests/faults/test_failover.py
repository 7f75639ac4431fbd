"""Failover with real daemon processes: SIGKILL, SIGSTOP past the TTL, and three daemons racing."""

import re
import signal
import threading
import time

import pytest
from django.db import connection

from orchestration.models import Action, ActionStatus, ExecutionLog, Lease, TickLedger
from orchestration.services.enqueue import action_enqueue
from tests.conftest import FAST_DAEMON_ENV, wait_until
from tests.faults.conftest import (
    assert_nothing_running,
    one_store_per_database,
    stored_artifacts,
    stored_sha256,
    success_logs,
    wait_for_exit,
)

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

TTL = float(FAST_DAEMON_ENV["AOL_LEASE_TTL_SECONDS"])
INTERVAL = float(FAST_DAEMON_ENV["AOL_TICK_INTERVAL_SECONDS"])
HEARTBEAT = float(FAST_DAEMON_ENV["AOL_HEARTBEAT_SECONDS"])
#: Slack for process scheduling on a small, busy machine.
MARGIN = 1.0


def owner_of(daemon) -> str:
    return daemon.owner()


def sleep_action(seconds: float, key: str) -> Action:
    return action_enqueue(action_type="SLEEP", payload={"seconds": seconds}, idempotency_key=key)[0]


def wait_running(action: Action, daemon) -> Action:
    wait_until(
        lambda: Action.objects.filter(pk=action.pk, status=ActionStatus.RUNNING, claimed_by=owner_of(daemon)).exists(),
        message=f"action #{action.pk} RUNNING under {owner_of(daemon)}",
    )
    return Action.objects.get(pk=action.pk)


def wait_status(action: Action, status: str, timeout: float = 20) -> Action:
    wait_until(
        lambda: Action.objects.filter(pk=action.pk, status=status).exists(),
        timeout=timeout,
        message=f"action #{action.pk} {status}",
    )
    return Action.objects.get(pk=action.pk)


@one_store_per_database
def test_failover__sigkill_mid_sleep__standby_takes_over_within_ttl_plus_interval_and_runs_it_exactly_once(
    start_daemon, artifacts_dir, artifact_store
):
    """Invariant: after SIGKILL of the holder mid-action, a standby acquires the lease no earlier than the
    holder's lease could expire and no later than TTL + one interval; the action ends SUCCESS with one
    success log and one artifact; nothing is left RUNNING."""
    action = sleep_action(3.0, "failover-sigkill")
    holder = start_daemon("--proof")
    holder.wait_for_output("Lease acquired")
    standby = start_daemon("--proof", "--standby")
    standby.wait_for_output("Standby: lease held by")
    wait_running(action, holder)
    time.sleep(0.3)
    assert Action.objects.get(pk=action.pk).status == ActionStatus.RUNNING, "the action ended before the kill"

    holder.signal(signal.SIGKILL)
    killed_at = time.time()
    holder.wait()

    action = wait_status(action, ActionStatus.SUCCESS)
    lease = Lease.objects.get()
    assert lease.owner == owner_of(standby)
    takeover = lease.acquired_at.timestamp() - killed_at
    assert takeover <= TTL + INTERVAL + MARGIN, f"takeover took {takeover:.2f}s"
    # The holder renewed at most one heartbeat before it died: a lease taken earlier was still live.
    assert takeover >= TTL - HEARTBEAT - 0.2, f"took over a live lease after {takeover:.2f}s"

    assert action.attempts == 2  # the lost attempt counts
    [success] = success_logs(action)
    assert success.actor == owner_of(standby)
    assert stored_artifacts(artifacts_dir, "sleep") == [success.artifact_ref]
    assert stored_sha256(success.artifact_ref) == success.artifact_sha256
    assert (
        ExecutionLog.objects.filter(action_id=action.pk, message__startswith="worker lost during attempt").count() == 1
    )
    assert_nothing_running()


@one_store_per_database
@pytest.mark.parametrize("frozen_is_standby", [False, True], ids=["plain-exits-4", "standby-waits-again"])
def test_failover__sigstop_past_ttl__frozen_holder_is_fenced_writes_nothing_and_steps_down(
    start_daemon, artifacts_dir, frozen_is_standby, artifact_store
):
    """Invariant: a holder frozen past its TTL and woken after a standby took over writes nothing (no log,
    no tick, no completion: its token is refused) and steps down: exit 4, or back to standby with
    --standby, from where it takes over within one interval once the new holder releases."""
    action = sleep_action(2.0, "failover-sigstop")
    frozen = start_daemon("--proof", *(["--standby"] if frozen_is_standby else []))
    frozen.wait_for_output("Lease acquired")
    successor = start_daemon("--proof", "--standby")
    successor.wait_for_output("Standby: lease held by")
    old_token = wait_running(action, frozen).lease_token
    time.sleep(0.3)

    frozen.signal(signal.SIGSTOP)
    try:
        action = wait_status(action, ActionStatus.SUCCESS)  # the successor recovered and re-ran it
        taken_over_at = Lease.objects.get().acquired_at
    finally:
        frozen.signal(signal.SIGCONT)

    if frozen_is_standby:
        frozen.wait_for_output("Back to standby")
        assert frozen.proc.poll() is None
    else:
        assert frozen.wait() == 4, frozen.output()
        assert "Lost the lease" in frozen.output()
    time.sleep(1.0)  # whatever the woken daemon was going to try, it has tried by now

    assert ExecutionLog.objects.filter(actor=owner_of(frozen), ts__gte=taken_over_at).count() == 0
    assert not TickLedger.objects.filter(lease_token=old_token, finished_at__gt=taken_over_at).exists()
    [success] = success_logs(action)
    assert success.actor == owner_of(successor)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS and action.claimed_by == owner_of(successor)
    assert stored_artifacts(artifacts_dir, "sleep") == [success.artifact_ref]
    assert_nothing_running()

    if frozen_is_standby:
        successor.signal(signal.SIGTERM)
        assert successor.wait() == 0
        released_at = time.time()
        wait_until(lambda: Lease.objects.get().owner == owner_of(frozen), message="the old holder took over again")
        assert Lease.objects.get().acquired_at.timestamp() - released_at <= INTERVAL + MARGIN


def test_failover__three_daemons_started_together__one_holder_at_every_instant_every_action_once(
    start_daemons_together,
):
    """Invariant, over ROUNDS rounds of three daemons whose runs start within milliseconds of each other:
    at every sampled instant at most one lease token has RUNNING actions; ticks ordered by end time
    never go back to an older token and each token belongs to one daemon; every action succeeds
    exactly once; a daemon that loses the race exits 3 without touching anything."""
    first = time.time() + STARTUP_SECONDS
    daemons = start_daemons_together(
        3, "--proof", "--ticks", "2", "--max-actions", "3", at=first, every=ROUND_SECONDS, times=ROUNDS
    )
    violations: list[str] = []
    samples = 0
    stop_sampling = threading.Event()

    def sample() -> None:
        nonlocal samples
        try:
            while not stop_sampling.is_set():
                tokens = set(Action.objects.filter(status=ActionStatus.RUNNING).values_list("lease_token", flat=True))
                samples += 1
                if len(tokens) > 1:
                    violations.append(f"RUNNING under tokens {sorted(tokens)} at {time.time():.3f}")
                time.sleep(0.005)
        finally:
            connection.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    actions = []
    try:
        for round_number in range(ROUNDS):
            time.sleep(max(0.0, first + round_number * ROUND_SECONDS - 0.3 - time.time()))
            actions += [sleep_action(0.05, f"race-{round_number}-{i}") for i in range(4)]
        for daemon in daemons:
            wait_for_exit(daemon, timeout=ROUND_SECONDS * 2 + 30)
    finally:
        stop_sampling.set()
        sampler.join()

    outputs = [daemon.output() for daemon in daemons]
    codes = [int(code) for out in outputs for code in re.findall(r"\[launch\] run=\d+ exit=(\d+)", out)]
    assert len(codes) == 3 * ROUNDS, outputs
    assert set(codes) <= {0, 3}, outputs
    assert violations == []
    assert samples > ROUNDS * 20  # the sampler really watched
    for action in actions:
        action.refresh_from_db()
        assert action.status == ActionStatus.SUCCESS, (action.idempotency_key, action.status)
        assert len(success_logs(action)) == 1, action.idempotency_key
    ticks = list(TickLedger.objects.order_by("finished_at", "id").values_list("lease_token", "owner"))
    tokens = [token for token, _ in ticks]
    assert tokens == sorted(tokens), "a tick of an older token ended after a newer token's tick"
    owners: dict[int, set[str]] = {}
    for token, owner in ticks:
        owners.setdefault(token, set()).add(owner)
    assert all(len(names) == 1 for names in owners.values()), owners
    assert len(owners) >= ROUNDS // 2  # the lease really changed hands round after round
    assert_nothing_running()


#: Rounds of the three-daemon race, the time between them, and the head start for Python to load.
ROUNDS = 12  # per database: 24 races in the whole suite
ROUND_SECONDS = 1.2
STARTUP_SECONDS = 3.0
