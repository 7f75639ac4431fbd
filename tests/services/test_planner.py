"""The planner's services (services/tokens.py, services/planner.py): tokens, scopes, proposals, stops."""

from datetime import timedelta

import pytest

from orchestration.exceptions import (
    IdempotencyConflict,
    InvalidAction,
    InvalidToken,
    NoEligibleActions,
    TokenRefused,
    TokenScopeMissing,
)
from orchestration.models import Action, ActionStatus, ApiToken, AuditEntry, ControlFlags
from orchestration.services import planner
from orchestration.services.tokens import token_authenticate, token_create, token_revoke

pytestmark = pytest.mark.django_db

POST = {"action_type": "POST_SOCIAL", "payload": {"platform": "x", "message": "hello"}}


def _token(scopes: str = "read,propose,cancel,pause", name: str = "planner") -> tuple[ApiToken, str]:
    return token_create(name=name, scopes=scopes, actor="cli:ops@host")


def test_token_secret__is_shown_once_and_only_its_hash_is_stored():
    token, secret = _token()
    stored = ApiToken.objects.get(pk=token.pk)
    assert secret.startswith("aol_") and len(secret) > 40
    assert secret not in repr(stored.__dict__)
    assert stored.prefix == secret[:12]
    assert token_authenticate(secret=secret).pk == token.pk
    entry = AuditEntry.objects.get(verb="create API token")
    assert secret not in str(entry.after) and entry.actor == "cli:ops@host"


@pytest.mark.parametrize(
    "secret, why", [("", "valid API token"), ("aol_nope", "not known"), ("Bearer x", "valid API token")]
)
def test_token_authenticate__refuses_unknown_secrets_without_echoing_them(secret, why):
    with pytest.raises(TokenRefused, match=why) as refused:
        token_authenticate(secret=secret)
    assert not secret or secret not in str(refused.value)


def test_token_authenticate__refuses_revoked_and_expired_tokens():
    token, secret = _token()
    token_revoke(name="planner", actor="cli:ops@host", reason="leaked")
    with pytest.raises(TokenRefused, match="revoked"):
        token_authenticate(secret=secret)
    _, short = token_create(name="short", scopes="read", actor="ops", expires_in=timedelta(days=1))
    ApiToken.objects.filter(name="short").update(expires_at=token.created_at - timedelta(days=1))
    with pytest.raises(TokenRefused, match="expired"):
        token_authenticate(secret=short)


@pytest.mark.parametrize("scopes", ["", "read,approve", ["switch_mode"], "resume", 5])
def test_token_create__refuses_unknown_or_missing_scopes_and_writes_nothing(scopes):
    with pytest.raises(InvalidToken):
        token_create(name="bad", scopes=scopes, actor="ops")
    assert not ApiToken.objects.exists() and not AuditEntry.objects.exists()


def test_token_create__refuses_a_name_in_use():
    _token()
    with pytest.raises(InvalidToken, match="exists already"):
        _token()
    assert ApiToken.objects.count() == 1


def test_propose__queues_as_the_token_and_needs_the_propose_scope():
    token, _ = _token()
    action, created = planner.planner_propose(token=token, idempotency_key="k1", **POST)
    assert created and action.status == ActionStatus.PENDING
    assert AuditEntry.objects.filter(actor="token:planner", verb="enqueue").exists()
    same, created_again = planner.planner_propose(token=token, idempotency_key="k1", **POST)
    assert same.pk == action.pk and not created_again
    with pytest.raises(IdempotencyConflict):
        planner.planner_propose(
            token=token, idempotency_key="k1", action_type="POST_SOCIAL", payload={"platform": "x", "message": "other"}
        )
    reader, _ = _token("read", name="reader")
    with pytest.raises(TokenScopeMissing):
        planner.planner_propose(token=reader, **POST)
    assert Action.objects.count() == 1


def test_propose_many__is_all_or_nothing_when_one_key_conflicts():
    token, _ = _token()
    planner.planner_propose(token=token, idempotency_key="taken", **POST)
    items = [
        {**POST, "idempotency_key": "new-1"},
        {"action_type": "POST_SOCIAL", "payload": {"platform": "x", "message": "changed"}, "idempotency_key": "taken"},
    ]
    with pytest.raises(IdempotencyConflict) as conflict:
        planner.planner_propose_many(token=token, items=items)
    assert conflict.value.items == (2,)
    assert list(Action.objects.values_list("idempotency_key", flat=True)) == ["taken"]


def test_propose_many__refuses_more_than_the_batch_limit():
    token, _ = _token()
    items = [{**POST, "idempotency_key": f"k{n}"} for n in range(planner.MAX_BATCH_ACTIONS + 1)]
    with pytest.raises(InvalidAction, match="at most"):
        planner.planner_propose_many(token=token, items=items)
    assert not Action.objects.exists()


def test_actions_list__pages_by_id_with_filters():
    token, _ = _token()
    ids = [planner.planner_propose(token=token, idempotency_key=f"k{n}", **POST)[0].pk for n in range(5)]
    first = planner.planner_actions_list(token=token, limit=2)
    assert [a.pk for a in first.actions] == ids[:2] and first.next_after == ids[1]
    last = planner.planner_actions_list(token=token, after=ids[3], limit=2)
    assert [a.pk for a in last.actions] == ids[4:] and last.next_after is None
    assert planner.planner_actions_list(token=token, status="SUCCESS").actions == []
    with pytest.raises(InvalidAction) as bad:
        planner.planner_actions_list(token=token, status="DONE")
    assert bad.value.field == "status"


def test_cancel__cancels_a_waiting_action_and_refuses_a_finished_one():
    token, _ = _token()
    action, _ = planner.planner_propose(token=token, **POST)
    planner.planner_cancel(token=token, action_id=action.pk)
    action.refresh_from_db()
    assert action.status == ActionStatus.CANCELLED
    with pytest.raises(NoEligibleActions):
        planner.planner_cancel(token=token, action_id=action.pk)


@pytest.mark.parametrize("verb", ["resume", "revive", "proof_off", "real"])
def test_stop__a_token_can_pause_and_kill_but_never_start_again(verb):
    token, _ = _token()
    planner.planner_stop(token=token, verb="pause")
    planner.planner_stop(token=token, verb="kill")
    flags = ControlFlags.objects.get()
    assert flags.paused and flags.killed
    with pytest.raises(InvalidAction, match="stays with people"):
        planner.planner_stop(token=token, verb=verb)
    flags.refresh_from_db()
    assert flags.paused and flags.killed and flags.proof_mode
