"""The daemon's tick, in process: dispatch, flags, budget, PROOF precedence, ledger, exit codes."""

import hashlib
import re
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestration import adapters
from orchestration.adapters.artifacts import artifact_path
from orchestration.daemon import EXIT_LEASE_HELD, EXIT_OK, Daemon, DaemonConfig
from orchestration.exceptions import LeaseHeldElsewhere
from orchestration.models import Action, ActionStatus, ExecutionLog, Lease, TickLedger, TickStatus
from orchestration.services.control import control_flags_get, control_kill, control_pause, control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from orchestration.services.lease import lease_acquire_or_renew
from tests import fake_adapters
from tests.factories import data_statements, hold_lease, post_social

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    for adapter in fake_adapters.ALL:
        monkeypatch.setitem(adapters._BUILT_IN, adapter.action_type, adapter)


def make_daemon(**overrides) -> tuple[Daemon, list[str]]:
    lines: list[str] = []
    config = DaemonConfig.from_settings(owner="test:1", interval_seconds=0.01, **overrides)
    return Daemon(config, out=lines.append), lines


def enqueue(action_type: str, key: str, **payload) -> Action:
    return action_enqueue(action_type=action_type, payload=payload, idempotency_key=key)[0]


def test_tick__runs_a_proof_post_social_to_success_with_a_verifiable_artifact():
    action = post_social("launch-1")
    daemon, _ = make_daemon()
    report = daemon.tick(0)
    assert (report.status, report.attempted, report.succeeded) == ("SUCCESS", 1, 1)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS
    log = ExecutionLog.objects.get(action_id=action.pk)
    assert hashlib.sha256(artifact_path(log.artifact_ref).read_bytes()).hexdigest() == log.artifact_sha256
    tick = TickLedger.objects.get()
    assert (tick.status, tick.actions_attempted, tick.actions_succeeded, tick.owner) == ("SUCCESS", 1, 1, "test:1")


def test_tick__claims_at_most_the_per_tick_limit():
    for i in range(5):
        post_social(f"k{i}")
    daemon, _ = make_daemon(max_actions_per_tick=3)
    assert daemon.tick(0).attempted == 3
    assert Action.objects.filter(status=ActionStatus.PENDING).count() == 2


def test_tick__one_failing_action_does_not_stop_the_others():
    bad = enqueue("TEST_TRANSIENT", "bad")
    good = post_social("good")
    report = make_daemon()[0].tick(0)
    assert (report.status, report.attempted, report.succeeded) == ("PARTIAL", 2, 1)
    bad.refresh_from_db()
    good.refresh_from_db()
    assert (bad.status, good.status) == (ActionStatus.RETRY, ActionStatus.SUCCESS)
    assert "ConnectionError: upstream timed out" in bad.last_error


def test_tick__permanent_errors_and_unknown_types_go_straight_to_dlq():
    permanent = enqueue("TEST_PERMANENT", "perm")
    unknown = Action.objects.create(idempotency_key="u", action_type="GONE_TYPE", payload={})
    report = make_daemon()[0].tick(0)
    assert (report.status, report.attempted, report.succeeded) == ("FAIL", 2, 0)
    permanent.refresh_from_db()
    unknown.refresh_from_db()
    assert (permanent.status, permanent.attempts) == (ActionStatus.DLQ, 1)
    assert (unknown.status, unknown.attempts) == (ActionStatus.DLQ, 1)
    assert "Unknown action type 'GONE_TYPE'" in unknown.last_error


def test_tick__real_mode_refuses_post_social_to_the_dlq_with_advice():
    control_set_proof_mode(enabled=False, actor="ops", reason="test REAL")
    action = post_social("real")
    make_daemon()[0].tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ
    assert "RealRunUnconfigured" in action.last_error and "keep PROOF mode on" in action.last_error


@pytest.mark.parametrize(("force", "setting"), [(True, False), (False, True)])
def test_tick__proof_wins_when_any_source_asks_for_it(settings, force, setting):
    control_set_proof_mode(enabled=False, actor="ops", reason="flag says REAL")
    settings.AOL_PROOF_MODE = setting
    action = post_social("p")
    make_daemon(force_proof=force)[0].tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCESS


def test_tick__fast_actions_are_claimed_in_batches_and_their_successes_recorded_together():
    """Group commit: 40 fast actions cost a handful of claims and result transactions, not 40 of
    each; every action still ends SUCCESS once, with one success log and one counted attempt."""
    actions = [enqueue("TEST_OK", f"ok{i}") for i in range(40)]
    daemon, _ = make_daemon(max_actions_per_tick=40)
    with CaptureQueriesContext(connection) as captured:
        report = daemon.tick(0)
    assert (report.attempted, report.succeeded) == (40, 40)
    states = set(Action.objects.filter(pk__in=[a.pk for a in actions]).values_list("status", "attempts"))
    assert states == {(ActionStatus.SUCCESS, 1)}
    assert ExecutionLog.objects.filter(action_id__in=[a.pk for a in actions]).count() == 40
    updates = [q for q in captured.captured_queries if q["sql"].startswith('UPDATE "aol_actions"')]
    assert len(updates) < 10, f"{len(updates)} UPDATEs of aol_actions for 40 actions"
    assert Action.objects.filter(claimed_in_batch=True).count() > 30


def test_tick__batch_size_one_claims_and_records_each_action_on_its_own(settings):
    settings.AOL_CLAIM_BATCH_SIZE = 1
    for i in range(5):
        enqueue("TEST_OK", f"ok{i}")
    daemon, _ = make_daemon(max_actions_per_tick=5)
    with CaptureQueriesContext(connection) as captured:
        assert daemon.tick(0).succeeded == 5
    updates = [q for q in captured.captured_queries if q["sql"].startswith('UPDATE "aol_actions"')]
    assert len(updates) == 10  # a claim and a result per action
    assert not Action.objects.filter(claimed_in_batch=True).exists()


class _PausingAdapter(fake_adapters.SucceedsAdapter):
    """Succeeds, and makes the daemon see a pause as its watchdog would (set by the test)."""

    action_type = "TEST_PAUSES"
    daemon: Daemon | None = None

    def execute_proof(self, action, *, attempt):
        self.daemon.state.flags_see(paused=True, killed=False)
        return super().execute_proof(action, attempt=attempt)


def test_tick__a_pause_seen_mid_batch_records_what_ran_and_returns_the_rest_uncounted(monkeypatch):
    adapter = _PausingAdapter()
    monkeypatch.setitem(adapters._BUILT_IN, adapter.action_type, adapter)
    warm = enqueue("TEST_OK", "warm")  # the first claim takes one action and measures it
    pauser = enqueue("TEST_PAUSES", "pauser")
    rest = [enqueue("TEST_OK", f"rest{i}") for i in range(5)]
    daemon, _ = make_daemon(max_actions_per_tick=10)
    adapter.daemon = daemon

    report = daemon.tick(0)

    assert (report.attempted, report.succeeded) == (2, 2) and "paused; no further action started" in report.notes
    assert Action.objects.get(pk=warm.pk).status == Action.objects.get(pk=pauser.pk).status == ActionStatus.SUCCESS
    states = set(Action.objects.filter(pk__in=[a.pk for a in rest]).values_list("status", "attempts"))
    assert states == {(ActionStatus.PENDING, 0)}
    assert not ExecutionLog.objects.filter(action_id__in=[a.pk for a in rest]).exists()


def test_tick__paused_claims_nothing_and_records_a_paused_tick():
    action = post_social("k")
    control_pause(actor="ops", reason="hold")
    report = make_daemon()[0].tick(0)
    assert report.status == "PAUSED" and "paused by ops" in report.notes
    action.refresh_from_db()
    assert action.status == ActionStatus.PENDING
    assert TickLedger.objects.get().status == "PAUSED"


def test_tick__killed_releases_the_lease_and_asks_to_stop():
    control_kill(actor="ops", reason="stop everything")
    daemon, _ = make_daemon()
    report = daemon.tick(0)
    assert report.stop and report.status == "KILLED"
    assert Lease.objects.get().owner == ""


def test_tick__holds_its_time_budget_and_leaves_the_rest_unclaimed():
    """An action still running at the tick's deadline is abandoned as a transient failure; the
    tick claims nothing more, so the other actions keep their attempts."""
    slow = [enqueue("TEST_SLOW", f"s{i}", seconds=0.5) for i in range(3)]
    report = make_daemon(max_tick_seconds=0.1)[0].tick(0)
    assert (report.attempted, report.succeeded) == (1, 0)
    assert "tick budget of 0.1s spent" in report.notes
    assert report.duration_seconds < 0.45  # did not wait for the 0.5 s action
    states = {a.pk: (a.status, a.attempts) for a in Action.objects.filter(pk__in=[s.pk for s in slow])}
    assert states[slow[0].pk] == (ActionStatus.RETRY, 1)
    assert "exceeded its deadline" in Action.objects.get(pk=slow[0].pk).last_error
    assert states[slow[1].pk] == states[slow[2].pk] == (ActionStatus.PENDING, 0)


def test_tick__recovers_actions_orphaned_by_a_dead_holder_before_claiming():
    action = post_social("orphan")
    old = hold_lease(owner="dead:9")
    Action.objects.filter(pk=action.pk).update(status=ActionStatus.RUNNING, attempts=1, lease_token=old)
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    daemon, lines = make_daemon()
    daemon.tick(0)  # recovers it to RETRY (due now) and runs it in the same tick
    action.refresh_from_db()
    assert (action.status, action.attempts) == (ActionStatus.SUCCESS, 2)
    assert any("Recovered 1 action(s)" in line for line in lines)


def test_tick__another_live_holder_stops_the_daemon_before_it_touches_anything():
    hold_lease(owner="other:2")
    action = post_social("k")
    with pytest.raises(LeaseHeldElsewhere, match="held by other:2"):
        make_daemon()[0].tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.PENDING
    assert not TickLedger.objects.exists()


def test_tick__an_idle_tick_costs_five_statements():
    """Renew the lease, read the flags, look for due schedules, look for due actions, record the tick."""
    daemon, _ = make_daemon()
    daemon.tick(0)
    with CaptureQueriesContext(connection) as captured:
        daemon.tick(1)
    assert data_statements(captured) == ["UPDATE", "SELECT", "SELECT", "SELECT", "INSERT"]
    assert sum("aol_schedules" in query["sql"] for query in captured.captured_queries) == 1


@pytest.mark.django_db(transaction=True)
def test_run__stops_after_its_tick_limit_and_releases_the_lease():
    control_flags_get()
    daemon, lines = make_daemon(max_ticks=3)
    assert daemon.run() == EXIT_OK
    ticks = [line.split("]")[0] for line in lines if line.startswith("[AOL Tick")]
    assert ticks == ["[AOL Tick 0", "[AOL Tick 1", "[AOL Tick 2"]
    assert TickLedger.objects.count() == 3
    assert Lease.objects.get().owner == ""


@pytest.mark.django_db(transaction=True)
def test_run__exits_3_and_names_the_holder_when_the_lease_is_taken():
    hold_lease(owner="other:2")
    daemon, lines = make_daemon(max_ticks=1)
    assert daemon.run() == EXIT_LEASE_HELD
    assert "Lease held by other:2 until" in lines[-1]
    assert Lease.objects.get().owner == "other:2"


@pytest.mark.django_db(transaction=True)
def test_run__heartbeat_keeps_the_lease_while_a_long_action_runs():
    """An action 2.5 times longer than the lease TTL does not let a rival daemon take over."""
    control_flags_get()
    slow = enqueue("TEST_SLOW", "slow", seconds=2.5)
    daemon, _ = make_daemon(max_ticks=1, heartbeat_seconds=0.2, lease_ttl_seconds=1.0, control_poll_seconds=0.1)
    taken: list[str] = []
    done = threading.Event()

    def rival() -> None:
        try:
            while not done.wait(0.1):
                if Action.objects.filter(pk=slow.pk, status=ActionStatus.RUNNING).exists():
                    result = lease_acquire_or_renew(owner="rival:2", ttl_seconds=1.0)
                    if result.ok:
                        taken.append(result.reason)
        finally:
            connection.close()

    rival_thread = threading.Thread(target=rival)
    rival_thread.start()
    try:
        assert daemon.run() == EXIT_OK
    finally:
        done.set()
        rival_thread.join(5)
    assert taken == []
    slow.refresh_from_db()
    assert slow.status == ActionStatus.SUCCESS


# --- environment failures ----------------------------------------------------------------------------


@pytest.fixture
def blocked_store(artifacts_dir, settings):
    """An artifacts directory under a regular file (ENOTDIR, whoever runs the tests); ``repair()`` fixes it."""
    blocker = artifacts_dir.parent / "blocker"
    blocker.write_text("not a directory")
    settings.AOL_ARTIFACTS_DIR = blocker / "artifacts"

    def repair() -> None:
        blocker.unlink()

    return repair


def test_tick__artifact_store_unusable__action_back_uncounted_claiming_paused_with_the_reason(blocked_store):
    actions = [post_social(f"k{i}") for i in range(3)]
    daemon, lines = make_daemon(max_actions_per_tick=10)

    report = daemon.tick(0)

    assert (report.status, report.attempted, report.succeeded) == (TickStatus.BLOCKED, 0, 0)
    assert "claiming paused: artifact store unavailable" in report.notes and "Not a directory" in report.notes
    states = set(Action.objects.filter(pk__in=[a.pk for a in actions]).values_list("status", "attempts"))
    assert states == {(ActionStatus.PENDING, 0)}  # not DLQ, not RETRY: no attempt counted
    assert ExecutionLog.objects.filter(action_id=actions[0].pk, message__contains="attempt not counted").count() == 1
    assert not ExecutionLog.objects.filter(action_id__in=[a.pk for a in actions[1:]]).exists()  # never started
    tick = TickLedger.objects.get()
    assert tick.status == TickStatus.BLOCKED and "artifact store unavailable" in tick.notes
    assert any("Artifact store unavailable: claiming paused" in line for line in lines)


def test_tick__artifact_store_still_unusable__claims_nothing_and_checks_again_with_a_growing_backoff(blocked_store):
    action = post_social("k")
    daemon, _ = make_daemon()
    for number in range(5):
        assert daemon.tick(number).status == TickStatus.BLOCKED

    notes = list(TickLedger.objects.order_by("id").values_list("notes", flat=True))
    assert [int(re.search(r"next in (\d+)s", note).group(1)) for note in notes] == [1, 2, 4, 8, 16]
    assert "5 failed check(s); next in 16s" in notes[-1]
    assert Action.objects.filter(pk=action.pk).values_list("status", "attempts").get() == (ActionStatus.PENDING, 0)
    assert ExecutionLog.objects.filter(action_id=action.pk).count() == 1  # claimed once, then never again


def test_tick__artifact_store_usable_again__work_resumes_by_itself_and_each_action_runs_once(blocked_store):
    actions = [post_social(f"k{i}") for i in range(3)]
    daemon, lines = make_daemon(max_actions_per_tick=10)
    daemon.tick(0)
    blocked_store()

    report = daemon.tick(1)

    assert (report.status, report.attempted, report.succeeded) == (TickStatus.SUCCESS, 3, 3)
    assert "artifact store available again" in report.notes
    states = set(Action.objects.filter(pk__in=[a.pk for a in actions]).values_list("status", "attempts"))
    assert states == {(ActionStatus.SUCCESS, 1)}
    assert any("Artifact store available again" in line for line in lines)


def test_tick__adapter_own_transient_error__still_counts_and_does_not_pause():
    bad = enqueue("TEST_TRANSIENT", "bad")
    daemon, _ = make_daemon()
    report = daemon.tick(0)
    assert (report.status, report.attempted) == (TickStatus.FAIL, 1)
    assert Action.objects.filter(pk=bad.pk).values_list("status", "attempts").get() == (ActionStatus.RETRY, 1)
    assert not TickLedger.objects.filter(status=TickStatus.BLOCKED).exists()
