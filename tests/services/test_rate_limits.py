"""Rate limits: the slot arithmetic, deferral at claim time, where limits come from, and their validation."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from orchestration.dbclock import db_now
from orchestration.models import Action, ActionStatus, ExecutionLog, RateLimit
from orchestration.services.claim import action_claim_due
from orchestration.services.enqueue import action_enqueue
from orchestration.services.rate_limits import Limit, earliest_slot, rate_key_for, rate_limit_validate, rate_limits_for
from orchestration.services.results import action_mark_failure
from tests.factories import OWNER, data_statements, hold_lease

pytestmark = pytest.mark.django_db

HOUR, DAY = 3600, 86400
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def limit(max_count: int, period: int, fields=("platform", "account")) -> Limit:
    return Limit(
        action_type="POST_SOCIAL", key_fields=tuple(fields), max_count=max_count, period_seconds=period, source="test"
    )


def post(n: int, account: str = "acme", platform: str = "threads") -> Action:
    return action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": platform, "account": account, "message": f"post {n}"},
        idempotency_key=f"{platform}-{account}-{n}",
    )[0]


def claim_all(token: int) -> list[Action]:
    claimed = []
    while batch := action_claim_due(owner=OWNER, token=token, limit=1, proof=True):
        claimed.extend(batch)
    return claimed


# --- The arithmetic -----------------------------------------------------------------------------------


def test_earliest_slot__five_per_hour_hands_out_slots_an_hour_after_each_earlier_run():
    """Runs at T0..T0+4s; the next 15 get, in order, the moments each of the 5 earlier runs (or
    promised slots) leaves its hour: T0+1h .. T0+1h+4s, then T0+2h …, T0+3h …."""
    points = [T0 + timedelta(seconds=i) for i in range(5)]
    now = T0 + timedelta(seconds=10)
    slots = []
    for _ in range(15):
        slot = earliest_slot(points=sorted(points), limits=[limit(5, HOUR)], now=now)
        slots.append(slot)
        points.append(slot)
    expected = [T0 + timedelta(hours=k, seconds=i) for k in (1, 2, 3) for i in range(5)]
    assert slots == expected


def test_earliest_slot__the_strictest_of_two_limits_wins():
    """5 per hour and 7 per day: after 7 runs in an hour, the 8th waits a day after the first."""
    points = [T0 + timedelta(minutes=i) for i in range(7)]
    now = T0 + timedelta(minutes=10)
    slot = earliest_slot(points=points, limits=[limit(5, HOUR), limit(7, DAY)], now=now)
    assert slot == T0 + timedelta(days=1)


def test_earliest_slot__now_when_there_is_room():
    assert earliest_slot(points=[T0], limits=[limit(2, HOUR)], now=T0 + timedelta(seconds=1)) == T0 + timedelta(
        seconds=1
    )


def test_earliest_slot__does_not_squeeze_in_before_a_promised_slot_if_that_window_would_overflow():
    """A slot promised in the future counts: a run now must not make that later window too full."""
    now = T0
    promised = [T0 + timedelta(minutes=30)]
    # 1 per hour: a run now would share (T0-30min, T0+30min] with the promised one.
    assert earliest_slot(points=promised, limits=[limit(1, HOUR)], now=now) == T0 + timedelta(minutes=90)


@pytest.mark.parametrize(
    ("payload", "fields", "key"),
    [
        ({"platform": " Twitter ", "account": "ACME"}, ("platform", "account"), "twitter|acme"),
        ({"platform": "twitter"}, ("platform", "account"), "twitter|-"),
        ({"platform": "twitter"}, (), "*"),
    ],
)
def test_rate_key_for__trims_lowercases_and_marks_missing_fields(payload, fields, key):
    assert rate_key_for(payload=payload, key_fields=fields) == key


# --- At claim time ------------------------------------------------------------------------------------


def test_claim__twenty_posts_for_one_account_under_five_per_hour__five_run_fifteen_deferred_to_their_slots():
    RateLimit.objects.create(action_type="POST_SOCIAL", key_fields="platform,account", max_count=5, period_seconds=HOUR)
    actions = [post(n) for n in range(20)]
    token = hold_lease()

    claimed = claim_all(token)

    assert [a.pk for a in claimed] == [a.pk for a in actions[:5]]
    rows = {a.pk: a for a in Action.objects.all()}
    runs = sorted(rows[a.pk].rate_counted_at for a in actions[:5])
    deferred = [rows[a.pk] for a in actions[5:]]
    assert all(a.status == ActionStatus.PENDING and a.attempts == 0 for a in deferred)
    expected = [runs[i] + timedelta(hours=k) for k in (1, 2, 3) for i in range(5)]
    assert [a.not_before for a in deferred] == expected
    assert all(a.deferred_note.startswith("deferred: rate limit 5 per 1h per platform+account") for a in deferred)
    assert "'threads|acme'" in deferred[0].deferred_note and "rate limit #" in deferred[0].deferred_note
    assert ExecutionLog.objects.filter(message__startswith="deferred: rate limit").count() == 15
    assert not Action.objects.due().exists()


def test_claim__another_account_is_not_held_back_by_a_full_one():
    RateLimit.objects.create(action_type="POST_SOCIAL", key_fields="platform,account", max_count=1, period_seconds=HOUR)
    first, second, other = post(1), post(2), post(3, account="globex")
    claimed = claim_all(hold_lease())
    assert {a.pk for a in claimed} == {first.pk, other.pk}
    second.refresh_from_db()
    assert second.deferred_note and second.status == ActionStatus.PENDING


def test_claim__failed_runs_do_not_count_but_successes_and_running_ones_do():
    RateLimit.objects.create(action_type="POST_SOCIAL", key_fields="platform,account", max_count=1, period_seconds=HOUR)
    post(1)
    token = hold_lease()
    [running] = action_claim_due(owner=OWNER, token=token, limit=1, proof=True)
    second = post(2)
    assert action_claim_due(owner=OWNER, token=token, limit=1, proof=True) == []  # RUNNING counts
    action_mark_failure(action=running, token=token, actor=OWNER, error="boom", permanent=True)  # DLQ: no longer
    Action.objects.filter(pk=second.pk).update(not_before=db_now())
    [claimed] = action_claim_due(owner=OWNER, token=token, limit=1, proof=True)
    assert claimed.pk == second.pk


def test_claim__a_deferred_action_runs_when_its_time_comes_and_its_note_is_cleared():
    RateLimit.objects.create(action_type="POST_SOCIAL", key_fields="platform,account", max_count=1, period_seconds=HOUR)
    post(1)
    second = post(2)
    token = hold_lease()
    claim_all(token)
    second.refresh_from_db()
    assert second.deferred_note
    # An hour passes: move the first run and the promised slot back by an hour.
    Action.objects.update(rate_counted_at=None)  # the first run left the window
    Action.objects.filter(pk=second.pk).update(not_before=db_now())
    [claimed] = action_claim_due(owner=OWNER, token=token, limit=1, proof=True)
    assert claimed.pk == second.pk
    second.refresh_from_db()
    assert (second.status, second.deferred_note, second.rate_key) == (ActionStatus.RUNNING, "", "threads|acme")


def test_claim__settings_defaults_apply_until_the_type_has_rows_and_a_disabled_row_switches_them_off(settings):
    settings.AOL_RATE_LIMITS = [
        {"action_type": "POST_SOCIAL", "key_fields": ["platform", "account"], "max_count": 1, "period_seconds": HOUR}
    ]
    assert [lim.source for lim in rate_limits_for(action_type="POST_SOCIAL")] == ["AOL_RATE_LIMITS"]
    post(1), post(2)
    assert len(claim_all(hold_lease())) == 1

    RateLimit.objects.create(
        action_type="POST_SOCIAL", key_fields="platform,account", max_count=1, period_seconds=1, enabled=False
    )
    assert rate_limits_for(action_type="POST_SOCIAL") == []


def test_claim__an_action_of_an_unlimited_type_costs_no_extra_statement():
    """A limit on another type changes nothing: one SELECT (with the pause and limit subqueries), one UPDATE."""
    RateLimit.objects.create(action_type="POST_SOCIAL", key_fields="platform,account", max_count=1, period_seconds=HOUR)
    action_enqueue(action_type="SLEEP", payload={"seconds": 0})
    token = hold_lease()
    with CaptureQueriesContext(connection) as captured:
        assert len(action_claim_due(owner=OWNER, token=token, limit=1, proof=True)) == 1
    assert data_statements(captured) == ["SELECT", "UPDATE"]


# --- Validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"action_type": "NOPE"}, "action_type", "Unknown action type 'NOPE'"),
        ({"max_count": 0}, "max_count", "greater than zero"),
        ({"period_seconds": 0}, "period_seconds", "greater than zero"),
        ({"key_fields": "platform,bogus"}, "key_fields", "no rate-limit key field 'bogus'"),
        ({"key_fields": "platform,platform"}, "key_fields", "listed twice"),
        ({"key_fields": "plat form"}, "key_fields", "not a payload field name"),
    ],
)
def test_rate_limit_clean__bad_values_name_the_field(fields, field, message):
    row = RateLimit(
        **{
            "action_type": "POST_SOCIAL",
            "key_fields": "platform,account",
            "max_count": 5,
            "period_seconds": HOUR,
            **fields,
        }
    )
    with pytest.raises(ValidationError) as caught:
        rate_limit_validate(limit=row)
    assert message in " ".join(caught.value.message_dict[field])


def test_rate_limit_clean__every_enabled_limit_of_a_type_uses_the_same_key():
    RateLimit.objects.create(action_type="POST_SOCIAL", key_fields="platform,account", max_count=5, period_seconds=HOUR)
    with pytest.raises(ValidationError, match="same key fields"):
        rate_limit_validate(
            limit=RateLimit(action_type="POST_SOCIAL", key_fields="platform", max_count=50, period_seconds=DAY)
        )
    rate_limit_validate(
        limit=RateLimit(action_type="POST_SOCIAL", key_fields="platform, account", max_count=50, period_seconds=DAY)
    )


@pytest.mark.parametrize("column", ["max_count", "period_seconds"])
def test_rate_limit_table__rejects_zero_even_around_the_validation(column):
    with pytest.raises(IntegrityError), transaction.atomic():
        RateLimit.objects.create(**{"action_type": "POST_SOCIAL", "max_count": 5, "period_seconds": HOUR, column: 0})
    assert not RateLimit.objects.exists()


def test_claim__a_row_with_broken_key_fields_written_around_validation_limits_the_whole_type():
    RateLimit.objects.create(action_type="POST_SOCIAL", key_fields="plat form!", max_count=1, period_seconds=HOUR)
    post(1), post(2, account="globex")
    assert len(claim_all(hold_lease())) == 1
