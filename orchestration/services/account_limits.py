"""A platform's rate limit on one account (HTTP 429 / rate-limit headers): the account's actions wait for its reset.

When an attempt raises AccountRateLimited the daemon calls ``account_rate_limit_hold``: the attempt
goes back to the queue with its attempt NOT counted (the platform refused before acting; like an
interrupted attempt) and ``not_before`` at the reset; every other waiting action of the same
account is deferred to the reset too; and the hold is remembered (``AccountRateLimit``) so that
the claim defers actions of that account enqueued later (``account_holds_active``,
``action_defer_for_account``) instead of running them into the same 429. Nothing counts an attempt.

"The same account" is the adapters' exclusive key (``ActionAdapter.exclusive_key``), the key that
also keeps two attempts of one account from running at once (AOL_REAL_CONCURRENCY): POST_SOCIAL's
``account:<name>``, WEBHOOK's ``webhook:<endpoint>:<account>``. Deferred actions show the
platform's answer in ``deferred_note``, like actions a rate limit of ours deferred.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from orchestration.adapters import adapter_get
from orchestration.conf import MAX_BACKOFF_SECONDS
from orchestration.dbclock import DbNow, db_now
from orchestration.exceptions import LeaseNotHeld, UnknownActionType
from orchestration.models import DUE_STATUSES, AccountRateLimit, Action, LogLevel
from orchestration.services.lease import lease_fenced_actions, lease_is_current
from orchestration.services.logs import log_entry, log_write, log_write_many
from orchestration.services.results import MAX_ERROR_LENGTH, action_uncounted_fields

logger = logging.getLogger("orchestration")

#: The most other waiting actions one 429 defers in one statement's list (more wait for the claim's check).
MAX_DEFERRED_AT_ONCE = 1000


def action_exclusive_key(*, action_type: str, payload: dict[str, Any]) -> str | None:
    """The adapter's exclusive key of a payload (one account's actions share it), or None."""
    try:
        return adapter_get(action_type).exclusive_key(payload)
    except UnknownActionType:
        return None


def account_rate_limit_hold(
    *, action: Action, account: str, retry_after_seconds: float, error: str, token: int, actor: str
) -> AccountRateLimit:
    """Return a rate-limited attempt to the queue uncounted and hold its account until the reset; returns the hold.

    Fenced on ``token`` like every result: LeaseNotHeld (nothing written) when this daemon no longer holds it.
    """
    seconds = min(max(retry_after_seconds, 0.0), MAX_BACKOFF_SECONDS)
    key = action_exclusive_key(action_type=action.action_type, payload=action.payload) or f"account:{account}"
    with transaction.atomic():
        reset_at = db_now() + timedelta(seconds=round(seconds, 3))
        held = AccountRateLimit.objects.select_for_update().filter(key=key).first()
        if held is not None and held.reset_at > reset_at:
            reset_at = held.reset_at  # an earlier 429 asked for longer
        note = (
            f"deferred until {reset_at:%Y-%m-%d %H:%M:%S} UTC: the platform rate-limited account {account!r} "
            f"(attempt not counted): {error}"
        )[:500]
        if not lease_fenced_actions(pks=[action.pk], token=token).update(
            **action_uncounted_fields(), not_before=reset_at, deferred_note=note
        ):
            raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not deferred")
        hold, _ = AccountRateLimit.objects.update_or_create(
            key=key,
            defaults={"account": account, "action_type": action.action_type, "reset_at": reset_at, "note": note},
        )
        others = _waiting_of(key=key, account=account, action_type=action.action_type, before=reset_at)
        if others:
            Action.objects.filter(pk__in=others, status__in=DUE_STATUSES).update(
                not_before=reset_at, deferred_note=note, updated_at=DbNow()
            )
        log_write_many(
            [
                log_entry(
                    action_id=action.pk,
                    level=LogLevel.WARNING,
                    message=f"attempt {action.attempts} {note}; {len(others)} other waiting action(s) of the "
                    "account deferred with it",
                    actor=actor,
                ),
                *(log_entry(action_id=pk, level=LogLevel.WARNING, message=note, actor=actor) for pk in others),
            ]
        )
    action.attempts -= 1
    action.not_before = reset_at
    action.deferred_note = note
    logger.warning(
        "action id=%s type=%s rate-limited: key=%s held until=%s, %s other action(s) deferred",
        action.pk,
        action.action_type,
        key,
        reset_at,
        len(others),
    )
    return hold


def _waiting_of(*, key: str, account: str, action_type: str, before: datetime) -> list[int]:
    """Ids of waiting actions of the account ``key`` names that are due before ``before``."""
    candidates = (
        Action.objects.filter(
            status__in=DUE_STATUSES, action_type=action_type, payload__account=account, not_before__lt=before
        )
        .order_by("not_before", "id")
        .values_list("pk", "payload")[:MAX_DEFERRED_AT_ONCE]
    )
    return [pk for pk, payload in candidates if action_exclusive_key(action_type=action_type, payload=payload) == key]


def account_holds_active() -> dict[str, AccountRateLimit]:
    """The accounts a platform holds now, by exclusive key (one SELECT, usually of no rows)."""
    return {hold.key: hold for hold in AccountRateLimit.objects.filter(reset_at__gt=DbNow())}


def action_defer_for_account(*, action: Action, hold: AccountRateLimit, token: int, actor: str) -> None:
    """Defer a due action of a held account to the reset, instead of claiming it (fenced; nothing counted)."""
    note = hold.note[:MAX_ERROR_LENGTH]
    if not (
        Action.objects.filter(pk=action.pk, status__in=DUE_STATUSES)
        .filter(lease_is_current(token=token))
        .update(not_before=hold.reset_at, deferred_note=note[:500], updated_at=DbNow())
    ):
        raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not deferred")
    log_write(action_id=action.pk, level=LogLevel.WARNING, message=note, actor=actor)
    logger.info("action id=%s type=%s deferred until=%s key=%s", action.pk, action.action_type, hold.reset_at, hold.key)


def action_return_claimed_for_account(*, action: Action, hold: AccountRateLimit, token: int, actor: str) -> None:
    """Give back a claimed, unstarted action of a held account (a batch member claimed before the 429):
    not run, its attempt not counted, due at the reset (fenced)."""
    with transaction.atomic():
        if not lease_fenced_actions(pks=[action.pk], token=token).update(
            **action_uncounted_fields(), not_before=hold.reset_at, deferred_note=hold.note[:500]
        ):
            raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not returned")
        log_write(action_id=action.pk, level=LogLevel.WARNING, message=f"not started: {hold.note}", actor=actor)
    action.attempts -= 1
    logger.info("action id=%s type=%s not started, account held until=%s", action.pk, action.action_type, hold.reset_at)
