"""Bulk enqueue: every item validated like action_enqueue, all or nothing, idempotent per key."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestration.exceptions import IdempotencyConflict, InvalidPayload, UnknownActionType
from orchestration.models import Action, ActionStatus
from orchestration.services.enqueue import EnqueueConflict, action_enqueue, action_enqueue_many
from tests.factories import post_social

pytestmark = pytest.mark.django_db

VALID = {"platform": "twitter", "message": "Launch day!"}


def item(key: str | None, **payload) -> dict:
    return {"action_type": "POST_SOCIAL", "payload": {**VALID, **payload}, "idempotency_key": key}


def test_action_enqueue_many__creates_every_item_in_input_order():
    report = action_enqueue_many(items=[item("a"), item("b", message="two"), item(None)])
    assert (report.existing, report.conflicts) == ([], [])
    rows = list(Action.objects.order_by("id"))
    assert report.created == [row.pk for row in rows]
    assert [(row.idempotency_key[:1], row.payload["message"], row.status) for row in rows] == [
        ("a", "Launch day!", ActionStatus.PENDING),
        ("b", "two", ActionStatus.PENDING),
        ("p", "Launch day!", ActionStatus.PENDING),  # generated key: post_social-…
    ]
    assert all(row.not_before <= timezone.now() for row in rows)


def test_action_enqueue_many__keeps_not_before():
    later = timezone.now() + timedelta(hours=2)
    action_enqueue_many(items=[{**item("later"), "not_before": later}])
    assert Action.objects.get().not_before == later


def test_action_enqueue_many__existing_keys_are_reported_and_conflicts_are_left_untouched():
    same = post_social("same", message="Launch day!")
    other = post_social("other", message="first version")
    report = action_enqueue_many(items=[item("new"), item("same"), item("other", message="second version")])
    assert report.existing == [same.pk]
    assert report.conflicts == [EnqueueConflict(item=3, idempotency_key="other", action_id=other.pk)]
    assert report.created == [Action.objects.get(idempotency_key="new").pk]
    assert Action.objects.get(pk=other.pk).payload["message"] == "first version"
    assert Action.objects.count() == 3


def test_action_enqueue_many__a_key_repeated_with_the_same_contents_is_created_once():
    report = action_enqueue_many(items=[item("k"), item("k")])
    (action,) = Action.objects.all()
    assert (report.created, report.existing) == ([action.pk], [action.pk])


def test_action_enqueue_many__a_key_repeated_with_other_contents_names_both_items_and_writes_nothing():
    with pytest.raises(IdempotencyConflict, match="Items 1 and 3 both use the idempotency key 'k'"):
        action_enqueue_many(items=[item("k"), item("x"), item("k", message="different")])
    assert Action.objects.count() == 0


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (
            item("bad", platform="myspace"),
            InvalidPayload,
            r"Item 3 \(key 'bad'\): 'platform' 'myspace' is not supported",
        ),
        ({**item("bad"), "action_type": "TWEET"}, UnknownActionType, r"Item 3 \(key 'bad'\): Unknown action type"),
        (["POST_SOCIAL", VALID], InvalidPayload, "Item 3: must be an object with action_type and payload, not list"),
        ({"action_type": "POST_SOCIAL"}, InvalidPayload, "Item 3: action_type and payload are required"),
        ({**item("bad"), "colour": 1}, InvalidPayload, r"Item 3 \(key 'bad'\): unknown field\(s\) 'colour'"),
        (item("bad\nkey"), InvalidPayload, "Item 3 .*control characters"),
        (
            {**item("bad"), "not_before": timezone.now().replace(tzinfo=None)},
            InvalidPayload,
            "Item 3 .*not_before must be a datetime that includes a timezone",
        ),
    ],
)
def test_action_enqueue_many__one_invalid_item_names_it_and_nothing_is_written(bad, error, message):
    with pytest.raises(error, match=message):
        action_enqueue_many(items=[item("a"), item("b"), bad, item("d")])
    assert Action.objects.count() == 0


def test_action_enqueue_many__statements_do_not_grow_with_each_item():
    items = [item(f"k{i}") for i in range(1000)]
    with CaptureQueriesContext(connection) as captured:
        report = action_enqueue_many(items=items)
    assert len(report.created) == 1000 and Action.objects.count() == 1000
    # Two key look-ups of 500 keys, then multi-row INSERTs: one on PostgreSQL; on SQLite as many as
    # its limit of 999 parameters per statement needs for the table's columns, not one per item.
    columns = len([f for f in Action._meta.concrete_fields if not f.primary_key])
    inserts = 1 if connection.vendor == "postgresql" else -(-1000 // (999 // columns))
    assert len(captured) <= inserts + 5


def test_action_enqueue_many__nothing_to_do():
    report = action_enqueue_many(items=[])
    assert (report.created, report.existing, report.conflicts) == ([], [], [])


def test_action_enqueue_many__payload_text_round_trips_exactly_and_is_found_again_one_at_a_time():
    payload = {**VALID, "platform": "threads", "message": 'Café "crème" \\ naïve ✓ — 10% off', "account": "ünïcode"}
    report = action_enqueue_many(items=[item("text", **payload)])
    assert Action.objects.get(pk=report.created[0]).payload == payload
    action, created = action_enqueue(action_type="POST_SOCIAL", payload=payload, idempotency_key="text")
    assert (action.pk, created) == (report.created[0], False)


def test_action_enqueue_many__ids_follow_input_order_and_not_before_defaults_to_the_call_time():
    before = timezone.now()
    report = action_enqueue_many(items=[item(f"k{i:03d}", message=f"m{i}") for i in range(300)])
    rows = list(Action.objects.order_by("id"))
    assert [row.idempotency_key for row in rows] == [f"k{i:03d}" for i in range(300)]
    assert report.created == [row.pk for row in rows]
    assert all(before <= row.not_before <= timezone.now() for row in rows)


@pytest.mark.django_db(transaction=True)
def test_action_enqueue_many__concurrent_batches_sharing_keys__one_row_per_key_and_every_item_accounted_for():
    """Three batches over overlapping keys at once (each waits on the others' uncommitted rows on
    PostgreSQL; SQLite serialises them): no error, one row per key, and every item of every batch is
    reported created by exactly one batch or existing for the others, with that row's id."""
    batches = [[item(f"k{i:03d}", message=f"m{i}") for i in range(start, start + 200)] for start in (0, 100, 150)]
    reports: dict[int, object] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(batches))

    def enqueue(number: int) -> None:
        try:
            barrier.wait(10)
            reports[number] = action_enqueue_many(items=batches[number])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue, args=(number,)) for number in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    ids = dict(Action.objects.values_list("idempotency_key", "pk"))
    assert len(ids) == 350
    created = [pk for report in reports.values() for pk in report.created]
    assert sorted(created) == sorted(ids.values())
    for number, report in reports.items():
        assert report.conflicts == []
        keys = [entry["idempotency_key"] for entry in batches[number]]
        assert sorted(report.created + report.existing) == sorted(ids[key] for key in keys)
