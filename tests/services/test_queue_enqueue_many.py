"""Bulk enqueue: every item validated like action_enqueue, all or nothing, idempotent per key."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestration.exceptions import IdempotencyConflict, InvalidPayload, UnknownActionType
from orchestration.models import Action, ActionStatus
from orchestration.services.queue import EnqueueConflict, action_enqueue_many
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
        ({**item("bad"), "priority": 1}, InvalidPayload, r"Item 3 \(key 'bad'\): unknown field\(s\) 'priority'"),
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
