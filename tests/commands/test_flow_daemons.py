"""Flow control with real daemon processes: rate limits and the approval gate across restarts,
per-type pause, cancelling a running action, priorities."""

import signal
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models import F

from orchestration.models import Action, ActionStatus, ExecutionLog, RateLimit, TickLedger
from orchestration.services.approval import action_approve
from orchestration.services.control import control_pause_type, control_resume_type, control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.conftest import wait_until
from tests.fake_adapters import FLOW_ADAPTERS, sent_lines

pytestmark = pytest.mark.django_db(transaction=True)


def statuses(actions) -> list[str]:
    rows = dict(Action.objects.filter(pk__in=[a.pk for a in actions]).values_list("pk", "status"))
    return [rows[a.pk] for a in actions]


def ticks_pass(n: int) -> None:
    """Wait until ``n`` more ticks are recorded (whichever daemon records them)."""
    start = TickLedger.objects.count()
    wait_until(lambda: TickLedger.objects.count() >= start + n, message=f"{n} more ticks")


def stop(daemon) -> None:
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0, daemon.output()


def test_rate_limit__twenty_posts_for_one_account_under_five_per_hour__five_run_fifteen_wait__across_restarts(
    start_daemon,
):
    RateLimit.objects.create(action_type="POST_SOCIAL", key_fields="platform,account", max_count=5, period_seconds=3600)
    posts = [
        action_enqueue(
            action_type="POST_SOCIAL",
            payload={"platform": "threads", "account": "acme", "message": f"post {n}"},
            idempotency_key=f"acme-{n}",
        )[0]
        for n in range(20)
    ]

    # The first daemon runs three and exits; the second must count them: two more, then the limit.
    first = start_daemon("--proof", "--ticks", "1", "--max-actions", "3")
    assert first.wait() == 0, first.output()
    assert statuses(posts).count(ActionStatus.SUCCESS) == 3
    second = start_daemon("--proof")
    wait_until(lambda: Action.objects.exclude(deferred_note="").count() == 15, message="15 deferred")
    ticks_pass(3)
    stop(second)

    rows = {a.pk: a for a in Action.objects.all()}
    done = [rows[p.pk] for p in posts[:5]]
    waiting = [rows[p.pk] for p in posts[5:]]
    assert [a.status for a in done] == [ActionStatus.SUCCESS] * 5
    assert all((a.status, a.attempts) == (ActionStatus.PENDING, 0) for a in waiting)
    runs = sorted(a.rate_counted_at for a in done)
    assert [a.not_before for a in waiting] == [runs[i] + timedelta(hours=k) for k in (1, 2, 3) for i in range(5)]
    assert ExecutionLog.objects.filter(message__startswith="deferred: rate limit 5 per 1h").count() == 15

    # An hour later (the clock moved back instead of waiting), a third daemon runs exactly the next five.
    Action.objects.exclude(rate_counted_at=None).update(rate_counted_at=F("rate_counted_at") - timedelta(hours=1))
    Action.objects.filter(pk__in=[a.pk for a in waiting]).update(not_before=F("not_before") - timedelta(hours=1))
    third = start_daemon("--proof")
    wait_until(lambda: statuses(posts).count(ActionStatus.SUCCESS) == 10, message="the next five ran")
    ticks_pass(3)
    stop(third)
    assert statuses(posts)[:10] == [ActionStatus.SUCCESS] * 10
    assert statuses(posts)[10:] == [ActionStatus.PENDING] * 10


def test_approval__real_post_never_runs_before_approval_and_once_after__across_restarts(
    start_daemon, daemon_env, artifacts_dir, settings
):
    settings.AOL_EXTRA_ADAPTERS = FLOW_ADAPTERS
    env = {"AOL_EXTRA_ADAPTERS": ",".join(FLOW_ADAPTERS)}
    control_set_proof_mode(enabled=False, actor="test", reason="REAL, with an approval gate")
    action = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "facebook", "account": "acme", "message": "We are hiring"},
        idempotency_key="hiring-1",
    )[0]

    first = start_daemon(env=env)
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.AWAITING_APPROVAL, message="awaiting")
    ticks_pass(3)
    stop(first)
    second = start_daemon(env=env)  # a restart does not run it either
    second.wait_for_output("Lease acquired")
    ticks_pass(3)
    stop(second)
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL and action.attempts == 1
    assert sent_lines(artifacts_dir) == []

    action_approve(action_id=action.pk, sha256=action.approval_sha256, actor="alice", reason="approved copy")
    third = start_daemon(env=env)
    wait_until(lambda: Action.objects.get(pk=action.pk).status == ActionStatus.SUCCESS, message="sent")
    ticks_pass(3)
    stop(third)
    assert sent_lines(artifacts_dir) == [["hiring-1", action.approval_sha256, "We are hiring"]]


def test_pause_type__pausing_one_type_leaves_the_others_running(start_daemon):
    control_pause_type(action_type="POST_SOCIAL", actor="alice", reason="brand review")
    posts = [
        action_enqueue(action_type="POST_SOCIAL", payload={"platform": "x", "message": f"p{n}"})[0] for n in range(2)
    ]
    drills = [action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0] for _ in range(3)]
    daemon = start_daemon("--proof")
    wait_until(lambda: statuses(drills) == [ActionStatus.SUCCESS] * 3, message="the other type ran")
    ticks_pass(3)
    assert statuses(posts) == [ActionStatus.PENDING] * 2
    control_resume_type(action_type="POST_SOCIAL", actor="alice", reason="reviewed")
    wait_until(lambda: statuses(posts) == [ActionStatus.SUCCESS] * 2, message="resumed type ran")
    stop(daemon)


def test_cancel__a_running_sleep_stops_at_once_ends_cancelled_and_the_daemon_goes_on(start_daemon, capsys):
    long = action_enqueue(action_type="SLEEP", payload={"seconds": 120}, idempotency_key="long")[0]
    daemon = start_daemon("--proof")
    wait_until(lambda: Action.objects.get(pk=long.pk).status == ActionStatus.RUNNING, message="running")
    call_command("aol_cancel", str(long.pk), "--reason", "wrong drill", "--actor", "alice")
    assert "asked to stop" in capsys.readouterr().out
    wait_until(lambda: Action.objects.get(pk=long.pk).status == ActionStatus.CANCELLED, timeout=5, message="cancelled")
    after = action_enqueue(action_type="SLEEP", payload={"seconds": 0}, idempotency_key="after")[0]
    wait_until(lambda: Action.objects.get(pk=after.pk).status == ActionStatus.SUCCESS, message="next one ran")
    stop(daemon)
    assert Action.objects.get(pk=long.pk).attempts == 1


def test_priority__the_higher_priority_action_runs_first(start_daemon):
    normal = [action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0] for _ in range(4)]
    urgent = action_enqueue(action_type="SLEEP", payload={"seconds": 0}, priority=10)[0]
    daemon = start_daemon("--proof", "--max-actions", "1")
    wait_until(lambda: statuses([*normal, urgent]) == [ActionStatus.SUCCESS] * 5, message="all ran")
    stop(daemon)
    order = list(ExecutionLog.objects.order_by("id").values_list("action_id", flat=True))
    assert order == [urgent.pk, *(a.pk for a in normal)]
