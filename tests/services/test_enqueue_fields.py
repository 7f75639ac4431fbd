"""One validation for every enqueue (action_fields_clean): errors name their field, bulk items carry every field."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestration.exceptions import IdempotencyConflict, InvalidAction
from orchestration.models import Action, AuditEntry, AuditOutcome
from orchestration.services.enqueue import (
    EnqueueConflict,
    action_enqueue,
    action_enqueue_many,
    action_enqueue_many_by_operator,
    action_fields_clean,
)

pytestmark = pytest.mark.django_db

VALID = {"platform": "twitter", "message": "Launch day!"}


def item(key: str, **fields) -> dict:
    return {"action_type": "POST_SOCIAL", "payload": VALID, "idempotency_key": key, **fields}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"action_type": "SEND_FAX"}, "action_type"),
        ({"payload": {"platform": "myspace", "message": "x"}}, "payload"),
        ({"payload": ["not", "an", "object"]}, "payload"),
        ({"idempotency_key": "bad\nkey"}, "idempotency_key"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
        ({"not_before": timezone.now().replace(tzinfo=None)}, "not_before"),
        ({"not_before": "2030-01-01"}, "not_before"),
        ({"priority": 101}, "priority"),
        ({"requires_approval": "yes"}, "requires_approval"),
        ({"action_type": "DRAFT_SOCIAL", "payload": {"platform": "x", "brief": "b"}, "requires_approval": True},
         "requires_approval"),
    ],
)  # fmt: skip
def test_action_fields_clean__each_error_names_the_field_it_is_about(changes, field):
    with pytest.raises(InvalidAction) as raised:
        action_fields_clean(**{"action_type": "POST_SOCIAL", "payload": VALID, **changes})
    assert raised.value.field == field


def test_action_fields_clean__normalises_and_writes_nothing():
    later = timezone.now() + timedelta(hours=1)
    fields = action_fields_clean(
        action_type="POST_SOCIAL", payload=VALID, not_before=later, priority=5, requires_approval=True
    )
    assert fields["idempotency_key"].startswith("post_social-")
    assert (fields["not_before"], fields["priority"], fields["requires_approval"]) == (later, 5, True)
    assert not Action.objects.exists()


def test_action_enqueue_many__items_carry_priority_approval_and_not_before():
    later = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    report = action_enqueue_many(
        items=[item("urgent", priority=50, requires_approval=True, not_before=later), item("plain")]
    )
    assert len(report.created) == 2
    urgent, plain = Action.objects.get(idempotency_key="urgent"), Action.objects.get(idempotency_key="plain")
    assert (urgent.priority, urgent.requires_approval, urgent.not_before) == (50, True, later)
    assert (plain.priority, plain.requires_approval) == (0, False)


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        (item("b", priority=500), "priority", r"Item 2 \(key 'b'\): Priority must be a whole number"),
        (item("b", requires_approval="yes"), "requires_approval", r"Item 2 \(key 'b'\): requires_approval must be"),
    ],
)
def test_action_enqueue_many__a_bad_priority_or_approval_names_the_item_and_its_field(bad, field, message):
    with pytest.raises(InvalidAction, match=message) as raised:
        action_enqueue_many(items=[item("a"), bad])
    assert (raised.value.field, raised.value.items, raised.value.idempotency_key) == (field, (2,), "b")
    assert not Action.objects.exists()


def test_action_enqueue_many__the_approval_requirement_is_part_of_an_action_like_in_action_enqueue():
    gated, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="g", requires_approval=True)
    with pytest.raises(IdempotencyConflict):
        action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="g")
    report = action_enqueue_many(items=[item("g")])
    assert report.conflicts == [EnqueueConflict(item=1, idempotency_key="g", action_id=gated.pk)]
    with pytest.raises(IdempotencyConflict, match="Items 1 and 2 both use the idempotency key 'k'") as raised:
        action_enqueue_many(items=[item("k"), item("k", requires_approval=True)])
    assert raised.value.items == (1, 2)


def test_action_enqueue_many_by_operator__one_audit_row_with_who_why_and_counts():
    action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="old")
    report = action_enqueue_many_by_operator(
        items=[item("old"), item("new1"), item("new2")], actor="cli:ops@host", reason="launch", source="launch.jsonl"
    )
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.verb, entry.outcome, entry.reason) == (
        "cli:ops@host",
        "enqueue",
        AuditOutcome.DONE,
        "launch",
    )
    assert entry.after == {"created": 2, "existing": 1, "conflicts": 0, "source": "launch.jsonl"}
    assert entry.target == f"2 actions: #{report.created[0]}, #{report.created[1]}"


def test_action_enqueue_many_by_operator__an_invalid_item_writes_neither_actions_nor_audit():
    with pytest.raises(InvalidAction):
        action_enqueue_many_by_operator(items=[item("a"), item("b", priority=500)], actor="cli:ops@host", reason="x")
    assert not Action.objects.exists() and not AuditEntry.objects.exists()
