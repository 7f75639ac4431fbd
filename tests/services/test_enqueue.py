"""action_enqueue: validation, idempotency and what it writes (services, in-process, real database)."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from orchestration.exceptions import IdempotencyConflict, InvalidPayload, UnknownActionType
from orchestration.models import Action, ActionStatus
from orchestration.services.enqueue import action_enqueue, action_payload_from_json

pytestmark = pytest.mark.django_db

VALID = {"platform": "twitter", "message": "Launch day!"}


def test_action_enqueue__creates_pending_action():
    action, created = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    assert created
    action.refresh_from_db()
    assert (action.status, action.attempts, action.payload) == (ActionStatus.PENDING, 0, VALID)
    assert action.not_before <= timezone.now()


def test_action_enqueue__same_key_same_payload_returns_existing_row():
    first, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    second, created = action_enqueue(action_type="POST_SOCIAL", payload=dict(VALID), idempotency_key="k1")
    assert not created
    assert second.pk == first.pk
    assert Action.objects.count() == 1


def test_action_enqueue__same_key_other_payload_is_a_conflict_and_writes_nothing():
    action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict, match="k1.*different payload"):
        action_enqueue(action_type="POST_SOCIAL", payload={**VALID, "message": "other"}, idempotency_key="k1")
    assert Action.objects.get().payload == VALID


def test_action_enqueue__without_key_generates_a_distinct_one():
    a, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID)
    b, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID)
    assert a.idempotency_key != b.idempotency_key


def test_action_enqueue__not_before_in_future_is_kept():
    later = timezone.now() + timedelta(hours=1)
    action, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID, not_before=later)
    action.refresh_from_db()
    assert action.not_before == later


@pytest.mark.parametrize(
    ("action_type", "payload", "key", "error", "message"),
    [
        ("POST_SOCIAL", ["a", "list"], None, InvalidPayload, "must be a JSON object, not list"),
        ("POST_SOCIAL", "text", None, InvalidPayload, "must be a JSON object, not str"),
        ("NOPE", VALID, None, UnknownActionType, "Unknown action type 'NOPE'; known types: .*POST_SOCIAL"),
        ("POST_SOCIAL", {"message": "hi"}, None, InvalidPayload, "'platform' is required"),
        ("POST_SOCIAL", {"platform": "twitter"}, None, InvalidPayload, "'message' is required"),
        ("POST_SOCIAL", {"platform": "", "message": "hi"}, None, InvalidPayload, "'platform' must not be empty"),
        ("POST_SOCIAL", {"platform": "twitter", "message": "  "}, None, InvalidPayload, "'message' must not be empty"),
        ("POST_SOCIAL", {"platform": "myspace", "message": "hi"}, None, InvalidPayload, "'myspace' is not supported"),
        ("POST_SOCIAL", {"platform": "twitter", "message": 5}, None, InvalidPayload, "'message' must be a str"),
        ("POST_SOCIAL", {"platform": "twitter", "message": "x" * 281}, None, InvalidPayload, "at most 280"),
        ("POST_SOCIAL", {**VALID, "extra": 1}, None, InvalidPayload, "unknown field"),
        ("POST_SOCIAL", VALID, "", InvalidPayload, "idempotency key must be a non-empty"),
        ("POST_SOCIAL", VALID, "k" * 201, InvalidPayload, "limit is 200"),
        ("POST_SOCIAL", VALID, "bad\nkey", InvalidPayload, "control characters"),
    ],
)
def test_action_enqueue__bad_input_is_rejected_with_a_clear_message_and_nothing_written(
    action_type, payload, key, error, message
):
    with pytest.raises(error, match=message):
        action_enqueue(action_type=action_type, payload=payload, idempotency_key=key)
    assert Action.objects.count() == 0


def test_action_enqueue__oversized_payload_names_the_limit(settings):
    settings.AOL_MAX_PAYLOAD_BYTES = 1000
    with pytest.raises(InvalidPayload, match=r"the limit is 1000 \(AOL_MAX_PAYLOAD_BYTES\)"):
        action_enqueue(action_type="POST_SOCIAL", payload={**VALID, "account": "a" * 2000})
    assert Action.objects.count() == 0


def test_action_enqueue__deeply_nested_payload_is_rejected():
    nested: dict = {}
    for _ in range(50):
        nested = {"n": nested}
    with pytest.raises(InvalidPayload, match="nested more than"):
        action_enqueue(action_type="POST_SOCIAL", payload={**VALID, "account": nested})
    assert Action.objects.count() == 0


def test_action_enqueue__naive_not_before_is_rejected():
    with pytest.raises(InvalidPayload, match="timezone"):
        action_enqueue(action_type="POST_SOCIAL", payload=VALID, not_before=timezone.now().replace(tzinfo=None))


@pytest.mark.django_db(transaction=True)
def test_action_enqueue__outside_a_transaction_is_one_statement_and_a_repeat_is_two(django_assert_num_queries):
    """A fresh enqueue is a single INSERT that commits on its own (no BEGIN/COMMIT round trips);
    a repeat of the key is that INSERT (which skips the row) and the look-up of the holder."""
    with django_assert_num_queries(1):
        first, created = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    assert created and Action.objects.get().pk == first.pk
    with django_assert_num_queries(2):
        again, created = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    assert (again.pk, created) == (first.pk, False)


def test_action_enqueue__returns_the_row_as_stored():
    later = timezone.now() + timedelta(minutes=5)
    for not_before in (None, later):
        action, _ = action_enqueue(action_type="POST_SOCIAL", payload=VALID, not_before=not_before, priority=7)
        stored = Action.objects.get(pk=action.pk)
        fields = [f.attname for f in Action._meta.concrete_fields]
        assert [getattr(action, name) for name in fields] == [getattr(stored, name) for name in fields]
        assert not action._state.adding


@pytest.mark.django_db(transaction=True)
def test_action_enqueue__conflict_inside_a_callers_transaction_leaves_that_transaction_usable():
    """A caller's transaction survives a refused enqueue: it can go on writing, and commits what it wrote."""
    action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
    with transaction.atomic():
        action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="before")
        with pytest.raises(IdempotencyConflict, match="different payload"):
            action_enqueue(action_type="POST_SOCIAL", payload={**VALID, "message": "other"}, idempotency_key="k1")
        existing, created = action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="k1")
        assert not created
        action_enqueue(action_type="POST_SOCIAL", payload=VALID, idempotency_key="after")
    assert sorted(Action.objects.values_list("idempotency_key", flat=True)) == ["after", "before", "k1"]
    assert Action.objects.get(idempotency_key="k1").payload == VALID


@pytest.mark.parametrize("text", ["{bad", "", "{'single': 'quotes'}"])
def test_action_payload_from_json__malformed_json_says_where(text):
    with pytest.raises(InvalidPayload, match="not valid JSON"):
        action_payload_from_json(text=text)
