"""The daemon's claim of due actions (fenced on its lease token), with flow control decided in it."""

import logging
from functools import cache
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef

from orchestration.conf import action_type_settings
from orchestration.dbclock import DbNow, db_now
from orchestration.exceptions import LeaseNotHeld
from orchestration.models import (
    DUE_STATUSES,
    FIRST_ATTEMPT_STATUSES,
    OPEN_STATUSES,
    AccountRateLimit,
    Action,
    ActionStatus,
    ActionTypePause,
    ClaimedMode,
    LogLevel,
    RateLimit,
)
from orchestration.services.account_limits import account_holds_active, action_defer_for_account, action_exclusive_key
from orchestration.services.approval import action_claim_mode
from orchestration.services.lease import lease_fenced_actions, lease_is_current
from orchestration.services.logs import log_write
from orchestration.services.rate_limits import RateDecision, rate_limit_decide, rate_limits_for
from orchestration.services.results import action_outcome_unknown_policy, action_uncounted_fields

logger = logging.getLogger("orchestration")


#: How many rate-limited actions one claim may defer before it gives up for this call (the next
#: tick goes on), so a long queue of over-limit actions cannot hold the claim's transaction long.
MAX_DEFERRALS_PER_CLAIM = 50


def action_claim_due(
    *,
    owner: str,
    token: int,
    limit: int,
    proof: bool | None = None,
    exclusive: frozenset[str] | None = None,
    holds: dict[str, AccountRateLimit] | None = None,
) -> list[Action]:
    """Mark up to ``limit`` due actions RUNNING under ``token``: highest priority first, then oldest due.

    The claim is one short transaction; the work happens after it commits. On PostgreSQL the
    rows are locked with SKIP LOCKED so two claimers never get the same row and never wait on
    each other; SQLite has no row locks, but the IMMEDIATE transaction serialises writers.
    ``proof`` records the mode the attempt runs in (None: unknown), which recovery needs to
    decide whether an attempt with an unknown outcome may be retried.

    Flow control (docs/flow-control.md), decided here so that it holds across restarts: actions
    of a paused type are passed over; in REAL mode an action gated by approval and not yet
    approved is claimed in PROOF, to make the artifact a person approves; an action over a rate
    limit is deferred (``not_before`` moved, ``deferred_note`` set) instead of claimed. Without
    pauses, gates or limits in play the claim is still one SELECT and one UPDATE. An action whose
    attempts already reach its type's limit (a row written around the services, or a limit lowered
    since its last attempt) is moved to the DLQ without running.

    Batches (``limit`` > 1) take only actions that a crash cannot harm by being claimed beside
    others (``action_batchable``): first attempts whose outcome recovery would simply retry. An
    action that is not batchable is claimed alone, and ends the batch before it. Batch-claimed
    rows are marked ``claimed_in_batch``, so recovery does not count their attempt.

    ``exclusive`` (the concurrent scheduler's claim, AOL_REAL_CONCURRENCY > 1: the exclusive keys of
    the attempts in flight) claims up to ``limit`` actions that all start at once, so none is a
    batch member, and passes over a REAL action whose exclusive key (its account) is in flight or
    taken by another action of this claim: one account's actions never run at the same time.

    A REAL action of an account a platform rate-limited (services/account_limits.py) is deferred to
    the account's reset instead of claimed. ``holds`` are those holds as the caller knows them (the
    daemon keeps them, saving a query per claim; those reset are removed from it); None reads them here.
    """
    daemon_mode = "" if proof is None else ClaimedMode.PROOF if proof else ClaimedMode.REAL
    max_attempts = cache(lambda action_type: action_type_settings(action_type).max_attempts)  # per type, per claim
    claimed: list[Action] = []
    deferrals = 0
    concurrent = exclusive is not None
    taken = set(exclusive or ())  # exclusive keys in flight or claimed by this call
    skipped: list[int] = []  # due, but their account is busy: left for a later claim
    if daemon_mode != ClaimedMode.REAL:
        holds = {}
    elif holds is None:
        holds = account_holds_active()
    elif holds:  # the caller's: those reset by now (the database's clock) are dropped from it
        now = db_now()
        for reset in [held for held, hold in holds.items() if hold.reset_at <= now]:
            del holds[reset]
    with transaction.atomic():
        while len(claimed) < limit:
            due = (
                Action.objects.due()
                .exclude(action_type__in=ActionTypePause.objects.values("action_type"))
                .annotate(has_db_limits=Exists(RateLimit.objects.filter(action_type=OuterRef("action_type"))))
            )
            if claimed or skipped:
                due = due.exclude(pk__in=[a.pk for a in claimed] + skipped)
            if connection.features.has_select_for_update_skip_locked:
                due = due.select_for_update(skip_locked=True)
            rows = list(due[: limit - len(claimed)])
            if not rows:
                break
            plain: list[Action] = []
            passed_over = 0
            alone = False  # an action that must not share its claim was taken: the batch ends with it
            for action in rows:
                if action.cancel_requested:
                    # Cancelled while its last attempt was being recorded: it does not run again.
                    _cancel_unclaimed(action=action, token=token, actor=owner)
                    passed_over += 1
                    continue
                if action.attempts >= (allowed := max_attempts(action.action_type)):
                    _dead_letter_unclaimed(action=action, max_attempts=allowed, token=token, actor=owner)
                    passed_over += 1
                    continue
                mode = action_claim_mode(action=action, daemon_mode=daemon_mode)
                key = (
                    action_exclusive_key(action_type=action.action_type, payload=action.payload)
                    if mode == ClaimedMode.REAL and (concurrent or holds)
                    else None
                )
                if key is not None and key in holds:
                    action_defer_for_account(action=action, hold=holds[key], token=token, actor=owner)
                    passed_over += 1
                    continue
                if concurrent:
                    if key is not None and key in taken:
                        skipped.append(action.pk)
                        passed_over += 1
                        continue
                elif limit > 1 and not action_batchable(action=action, mode=mode):
                    if claimed or plain:
                        break  # it will be claimed on its own by the next claim
                    alone = True
                gated = mode == ClaimedMode.PROOF and daemon_mode == ClaimedMode.REAL
                limits = (
                    [] if gated else rate_limits_for(action_type=action.action_type, db_defined=action.has_db_limits)
                )
                if not limits:
                    action.claimed_mode = mode
                    plain.append(action)
                    if key is not None:
                        taken.add(key)
                    if alone:
                        break
                    continue
                decision = rate_limit_decide(action=action, limits=limits, now=db_now())
                if decision.defer_until is not None:
                    _defer(action=action, decision=decision, token=token, actor=owner)
                    passed_over += 1
                    alone = False
                    continue
                # Claimed at once, so that the next action of the same key counts this one.
                _claim_rows(
                    [action],
                    owner=owner,
                    token=token,
                    mode=mode,
                    batch=limit > 1 and not alone and not concurrent,
                    rate_key=decision.key,
                )
                claimed.append(action)
                if key is not None:
                    taken.add(key)
                if alone:
                    break
            in_batch = limit > 1 and not alone and not concurrent
            for mode in sorted({action.claimed_mode for action in plain}):
                batch = [a for a in plain if a.claimed_mode == mode]
                _claim_rows(batch, owner=owner, token=token, mode=mode, batch=in_batch)
            claimed.extend(plain)
            deferrals += passed_over
            if alone or not passed_over or deferrals >= MAX_DEFERRALS_PER_CLAIM:
                break
    return claimed


def action_batchable(*, action: Action, mode: str) -> bool:
    """May ``action`` be claimed together with others, in ``mode``?

    Only if a crash of its daemon cannot harm it: recovery returns a batch-claimed action to the
    queue with its attempt uncounted, because it may not have started. That is right only for a
    first attempt (PENDING or READY: never failed, never recovered) whose unknown outcome recovery
    would retry anyway (PROOF, or an idempotent REAL adapter). A retry runs on its own, so an action
    that crashes its daemon is soon isolated and counts its own attempts towards the DLQ.
    """
    return action.status in FIRST_ATTEMPT_STATUSES and (
        action_outcome_unknown_policy(action_type=action.action_type, claimed_mode=mode, payload=action.payload)
        == ActionStatus.RETRY
    )


def _claim_rows(
    actions: list[Action], *, owner: str, token: int, mode: str, batch: bool, rate_key: str | None = None
) -> None:
    fields: dict[str, Any] = {
        "status": ActionStatus.RUNNING,
        "attempts": F("attempts") + 1,
        "claimed_by": owner,
        "lease_token": token,
        "claimed_mode": mode,
        "claimed_in_batch": batch,
        "deferred_note": "",
        "updated_at": DbNow(),
    }
    if rate_key is not None:
        fields.update(rate_key=rate_key, rate_counted_at=DbNow())
    claimed = (
        Action.objects.filter(pk__in_array=[a.pk for a in actions])
        .filter(lease_is_current(token=token))
        .update(**fields)
    )
    if claimed != len(actions):
        raise LeaseNotHeld(f"lease token {token} is no longer current; claimed nothing")
    for action in actions:
        action.status = ActionStatus.RUNNING
        action.attempts += 1
        action.claimed_by = owner
        action.lease_token = token
        action.claimed_mode = mode
        action.claimed_in_batch = batch
        if rate_key is not None:
            action.rate_key = rate_key


def _defer(*, action: Action, decision: RateDecision, token: int, actor: str) -> None:
    """Push a rate-limited action back to its next allowed time (fenced; its attempt is not counted)."""
    deferred = (
        Action.objects.filter(pk=action.pk, status__in=DUE_STATUSES)
        .filter(lease_is_current(token=token))
        .update(
            not_before=decision.defer_until,
            deferred_note=decision.note[:500],
            rate_key=decision.key,
            rate_counted_at=None,
            updated_at=DbNow(),
        )
    )
    if not deferred:
        raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not deferred")
    log_write(action_id=action.pk, message=decision.note, actor=actor)
    logger.info(
        "action id=%s type=%s deferred until=%s key=%s",
        action.pk,
        action.action_type,
        decision.defer_until,
        decision.key,
    )


def _dead_letter_unclaimed(*, action: Action, max_attempts: int, token: int, actor: str) -> None:
    """Retire a due action whose attempts already reach its limit, without running it (fenced)."""
    error = (
        f"not run: its {action.attempts} attempts already reach the limit of {max_attempts} "
        f"for {action.action_type}; moved to DLQ"
    )
    if not (
        Action.objects.filter(pk=action.pk, status__in=DUE_STATUSES)
        .filter(lease_is_current(token=token))
        .update(status=ActionStatus.DLQ, last_error=error, updated_at=DbNow())
    ):
        raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not dead-lettered")
    log_write(action_id=action.pk, level=LogLevel.ERROR, message=error, actor=actor)
    logger.warning(
        "action id=%s type=%s status=%s attempts=%s", action.pk, action.action_type, ActionStatus.DLQ, action.attempts
    )


def _cancel_unclaimed(*, action: Action, token: int, actor: str) -> None:
    if not (
        Action.objects.filter(pk=action.pk, status__in=DUE_STATUSES)
        .filter(lease_is_current(token=token))
        .update(status=ActionStatus.CANCELLED, updated_at=DbNow())
    ):
        raise LeaseNotHeld(f"action #{action.pk}: lease token {token} is no longer current; not cancelled")
    log_write(
        action_id=action.pk,
        level=LogLevel.WARNING,
        message="cancelled as an operator asked while its last attempt ended; not run again",
        actor=actor,
    )


def action_release_unstarted(*, actions: list[Action], token: int) -> int:
    """Give claimed-but-unstarted actions back to the queue, uncounting their attempt."""
    if not actions:
        return 0
    return lease_fenced_actions(pks=[a.pk for a in actions], token=token).update(**action_uncounted_fields())


def action_queue_depth() -> dict[str, int]:
    """How many actions wait in each open status (due, running, dead-lettered).

    Cheap at any table size: only open rows are counted, through the (status, action_type) index.
    """
    depth = {str(status): 0 for status in OPEN_STATUSES}
    rows = Action.objects.filter(status__in=OPEN_STATUSES).order_by().values_list("status").annotate(n=Count("id"))
    depth.update(dict(rows))
    return depth
