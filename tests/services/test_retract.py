"""Retract: the network deletes the post a REAL action made and the action ends RETRACTED, audited and
logged; anything else is refused saying why, and nothing is written (against a real local server)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestration.exceptions import ControlChangeRejected, NoEligibleActions, RetractRefused
from orchestration.models import Action, ActionStatus, AuditEntry, ClaimedMode, ExecutionLog
from orchestration.services.accounts import account_remove
from orchestration.services.enqueue import action_enqueue
from orchestration.services.retract import action_retract
from orchestration.services.verbs import VERBS, operator_run
from tests.platform_servers.local_network import (
    READ_ONLY_TOKEN,
    TOKEN,
    account_connect,
    real_post,
)

# transaction=True: the daemon runs the attempt on a thread of its own, with its own connection.
pytestmark = pytest.mark.django_db(transaction=True)


def snapshot(action: Action) -> tuple:
    action.refresh_from_db()
    return (
        action.status,
        action.updated_at,
        ExecutionLog.objects.filter(action_id=action.pk).count(),
        AuditEntry.objects.filter(verb="retract").count(),
    )


def retract(action: Action, **kwargs):
    return action_retract(action_ids=[action.pk], actor="ops", reason="posted by mistake", **kwargs)


def test_retract__the_network_deletes_the_post_and_the_action_ends_retracted_logged_and_audited(local_network):
    account_connect(local_network)
    action = real_post()
    assert action.remote_id in local_network.statuses
    report = retract(action)
    assert report.changed == [action.pk] and report.summary() == "1 action retracted (post deleted)."
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRACTED
    assert local_network.deleted == [action.remote_id] and action.remote_id not in local_network.statuses
    delete = local_network.requests[-1]
    assert (delete.method, delete.path) == ("DELETE", f"/api/v1/statuses/{action.remote_id}")
    assert delete.authorization == f"Bearer {TOKEN}"  # as the account that posted it
    log = ExecutionLog.objects.filter(action_id=action.pk).latest("id")
    assert log.message.startswith(f"retract by ops: Local network deleted post {action.remote_id}")
    assert "SUCCESS → RETRACTED; reason: posted by mistake" in log.message and log.actor == "ops"
    entry = AuditEntry.objects.get(verb="retract")
    assert (entry.outcome, entry.reason, entry.target) == ("DONE", "posted by mistake", f"1 action: #{action.pk}")
    assert entry.before["remote_id"] == action.remote_id and entry.after == {"status": "RETRACTED"}
    assert TOKEN not in str(entry.before) + log.message


def test_retract__through_the_verb_table_says_what_happened(local_network):
    account_connect(local_network)
    action = real_post()
    result = operator_run(verb=VERBS["retract"], actor="ops", reason="r", action_ids=[action.pk])
    assert result.changed and result.message == "1 action retracted (post deleted)."


def test_retract__a_post_already_gone_on_the_network_counts_as_retracted(local_network):
    account_connect(local_network)
    action = real_post()
    local_network.statuses.clear()  # deleted by hand on the network: it answers 404
    retract(action)
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRACTED


def test_retract__twice_is_refused_the_second_time_and_the_network_is_not_called_again(local_network):
    account_connect(local_network)
    action = real_post()
    retract(action)
    calls, before = len(local_network.requests), snapshot(action)
    with pytest.raises(NoEligibleActions, match=rf"#{action.pk} is already RETRACTED\. Nothing changed\."):
        retract(action)
    assert len(local_network.requests) == calls and snapshot(action) == before


@pytest.mark.parametrize(
    ("script", "token", "words"),
    [
        ([], READ_ONLY_TOKEN, "did not delete post {id}: the token lacks the write:statuses scope"),
        ([500], TOKEN, "did not delete post {id}: the network failed (HTTP 500); try again later"),
        ([429], TOKEN, "did not delete post {id}: rate limited until 2030-01-01"),
        (["hang"], TOKEN, "gave no answer about deleting post {id} (no answer within 0.5 s): it may or may not"),
        (["echo"], TOKEN, "could not be asked to delete post {id} (RuntimeError); check the account"),
    ],
)
def test_retract__when_the_network_refuses_or_is_silent_nothing_changes(local_network, script, token, words):
    account_connect(local_network, token=TOKEN)
    action = real_post()
    if token != TOKEN:  # the account's token lost the scope since it posted
        local_network.tokens[TOKEN] = {"read:accounts"}
    local_network.script.extend(script)
    before = snapshot(action)
    with pytest.raises(RetractRefused) as refused:
        retract(action, timeout_seconds=0.5)
    message = str(refused.value)
    assert words.format(id=action.remote_id) in message and ". Nothing changed. " in message, message
    assert TOKEN not in message  # "echo" quotes the Authorization header: only the error's kind is shown
    assert snapshot(action) == before and action.remote_id in local_network.statuses


def test_retract__an_unreachable_network_is_refused_and_nothing_changes(local_network):
    account_connect(local_network)
    action = real_post()
    local_network.stop()
    before = snapshot(action)
    with pytest.raises(RetractRefused, match="did not delete post .*: nobody answers at http://127.0.0.1"):
        retract(action)
    assert snapshot(action) == before


def waiting_action(**payload) -> Action:
    action, _ = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "mastodon", "account": "brand-main", "message": "hi", **payload},
        not_before=timezone.now() + timedelta(hours=1),
    )
    return action


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: waiting_action(), NoEligibleActions, "is PENDING; only a SUCCESS action's post can be retracted"),
        (
            lambda: Action.objects.create(
                action_type="SLEEP", idempotency_key="s", payload={"seconds": 0}, status="SUCCESS", claimed_mode="REAL"
            ),
            RetractRefused,
            "is a SLEEP action; only POST_SOCIAL posts can be retracted",
        ),
        (lambda: ("PROOF", {}), RetractRefused, "ran in PROOF mode: nothing was posted, so there is nothing to"),
        (lambda: ("REAL", {"remote_id": ""}), RetractRefused, "recorded no remote id"),
        (
            lambda: ("REAL", {"payload": {"platform": "x", "account": "brand-x", "message": "m"}}),
            RetractRefused,
            "Local network without retract posts cannot be retracted by the AOL",
        ),
        (
            lambda: ("REAL", {"payload": {"platform": "bluesky", "account": "b", "message": "m"}}),
            RetractRefused,
            "there is no REAL integration for bluesky yet",
        ),
    ],
)
def test_retract__what_cannot_be_retracted_is_refused_saying_why_and_nothing_is_written(
    local_network, monkeypatch, make, error, words
):
    from orchestration.adapters.platforms import PLATFORMS

    monkeypatch.delitem(PLATFORMS, "bluesky", raising=False)
    account_connect(local_network)
    made = make()
    if isinstance(made, tuple):  # a SUCCESS post changed as the case says
        mode, fields = made
        made = real_post()
        Action.objects.filter(pk=made.pk).update(claimed_mode=mode, **fields)
    before, calls = snapshot(made), len(local_network.requests)
    with pytest.raises(error, match=words) as refused:
        retract(made)
    assert str(refused.value).endswith("Nothing changed.")
    assert snapshot(made) == before and len(local_network.requests) == calls


def test_retract__a_removed_account_is_refused_naming_it(local_network):
    account_connect(local_network)
    action = real_post()
    account_remove(name="brand-main", actor="ops", reason="rotated")
    before = snapshot(action)
    with pytest.raises(RetractRefused, match="connected account 'brand-main', which no longer exists: add it back"):
        retract(action)
    assert snapshot(action) == before


def test_retract__credentials_that_cannot_be_decrypted_are_refused_saying_what_to_do(local_network, settings):
    from cryptography.fernet import Fernet

    account_connect(local_network)
    action = real_post()
    settings.AOL_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    before = snapshot(action)
    with pytest.raises(RetractRefused, match="cannot be decrypted with any key in AOL_CREDENTIALS_KEYS"):
        retract(action)
    assert snapshot(action) == before and local_network.deleted == []


@pytest.mark.parametrize(
    ("ids", "reason", "words"),
    [
        ([], "r", "Name at least one action"),
        (["a"], "r", "whole numbers"),
        ([1, 2], "r", r"Retract one action at a time \(2 were chosen\)"),
        ([1], "  ", "A reason is required to retract a post"),
        ([999999], "r", "#999999 does not exist"),
    ],
)
def test_retract__bad_input_is_refused_and_nothing_is_written(local_network, ids, reason, words):
    account_connect(local_network)
    action = real_post()
    before = snapshot(action)
    with pytest.raises(ControlChangeRejected, match=words):
        action_retract(action_ids=ids, actor="ops", reason=reason)
    assert snapshot(action) == before and local_network.deleted == []


def test_retract__the_action_s_rows_stay_and_a_retracted_post_still_counts_for_rate_limits(local_network):
    from orchestration.models import RATE_COUNTED_STATUSES, TERMINAL_STATUSES

    account_connect(local_network)
    action = real_post()
    retract(action)
    assert Action.objects.filter(pk=action.pk, claimed_mode=ClaimedMode.REAL).exists()
    assert ActionStatus.RETRACTED in TERMINAL_STATUSES and ActionStatus.RETRACTED in RATE_COUNTED_STATUSES
