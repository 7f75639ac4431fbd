"""Retract: delete on its network the post a REAL POST_SOCIAL action made; the action ends RETRACTED.

An operator verb (``retract`` in the verb table, permission ``retract_action``, a reason, audited),
run from one action's console page, the admin or ``manage.py aol_retract``; never from the planner's
API or MCP server. It acts on one action per request: each one is a call to a network that cannot be
undone, and an operator should see each answer.

Only a SUCCESS action that ran in REAL mode, recorded a remote id, and whose network's integration
``can_retract`` is eligible. The network is called as the account that posted (its credentials
decrypted for the call only), outside any transaction and with a timeout; only when it confirms is
the action marked RETRACTED, with one execution-log row and one audit row, in one transaction.
Anything else (not eligible, the account gone, the keys missing, the network refusing, unreachable,
or silent) is refused with what to do, and nothing is written.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from orchestration import permissions
from orchestration.adapters.platforms import Platform, platform_get
from orchestration.credentials import account_credentials
from orchestration.dbclock import DbNow
from orchestration.exceptions import (
    AccountCheckFailed,
    AdapterError,
    CredentialsUnavailable,
    NoEligibleActions,
    OutcomeUnknown,
    RetractRefused,
)
from orchestration.models import Account, Action, ActionStatus, AuditOutcome, ClaimedMode, LogLevel
from orchestration.services.audit import audit_write, describe_ids
from orchestration.services.control import operator_reason_clean
from orchestration.services.logs import log_write
from orchestration.services.operator import BulkReport, action_ids_clean
from orchestration.services.operator_verb import ACTIONS, BULK_SINGLE, CONSOLE_ACTIONS, OperatorVerb

logger = logging.getLogger("orchestration")

#: How long the network has to answer a delete, in seconds (connect and read).
RETRACT_TIMEOUT_SECONDS = 15.0
RETRACTABLE_TYPE = "POST_SOCIAL"
_NOTHING = " Nothing changed."


def _sentence(text: object) -> str:
    """``text`` ending as a sentence, so "Nothing changed." can follow it."""
    words = str(text).strip()
    return words if words.endswith((".", "!", "?")) else f"{words}."


@dataclass(frozen=True)
class RetractTarget:
    action: Action
    platform: Platform
    account: Account


def _platform_of(action: Action) -> tuple[str, Platform | None]:
    name = str(action.payload.get("platform", "")).strip().lower()
    name = "x" if name == "twitter" else name
    return name, platform_get(name)


def action_retract_problem(*, action: Action) -> str:
    """Why ``action``'s post cannot be retracted ('' when it can), from the action and the registry alone."""
    if action.status == ActionStatus.RETRACTED:
        return f"#{action.pk} is already RETRACTED."
    if action.status != ActionStatus.SUCCESS:
        return f"#{action.pk} is {action.status}; only a SUCCESS action's post can be retracted."
    if action.action_type != RETRACTABLE_TYPE:
        return f"#{action.pk} is a {action.action_type} action; only {RETRACTABLE_TYPE} posts can be retracted."
    if action.claimed_mode != ClaimedMode.REAL:
        return f"#{action.pk} ran in PROOF mode: nothing was posted, so there is nothing to retract."
    if not action.remote_id:
        return f"#{action.pk} recorded no remote id, so its post cannot be found; delete it on the network by hand."
    name, platform = _platform_of(action)
    if platform is None:
        return f"#{action.pk}: there is no REAL integration for {name or 'its platform'} yet."
    if not platform.can_retract:
        return f"#{action.pk}: {platform.label} posts cannot be retracted by the AOL; delete it on {platform.label}."
    return ""


def action_retractable(action: Action) -> bool:
    """The verb table's ``applies_to``: one action's page offers Retract only for a post it can delete."""
    return not action_retract_problem(action=action)


def _target(action_id: int) -> RetractTarget:
    action = Action.objects.filter(pk=action_id).first()
    if action is None:
        raise NoEligibleActions(f"Nothing to retract: #{action_id} does not exist.{_NOTHING}")
    problem = action_retract_problem(action=action)
    if problem:
        eligible = action.status == ActionStatus.SUCCESS
        raise (RetractRefused if eligible else NoEligibleActions)(f"Nothing to retract: {problem}{_NOTHING}")
    _, platform = _platform_of(action)
    assert platform is not None  # action_retract_problem said so
    name = str(action.payload.get("account") or "")
    account = Account.objects.filter(name=name).first() if name else None
    if account is None:
        raise RetractRefused(
            f"#{action.pk} was posted as connected account {name!r}, which no longer exists: add it back "
            f"(aol_accounts add) to retract as it, or delete the post on {platform.label} by hand.{_NOTHING}"
        )
    return RetractTarget(action=action, platform=platform, account=account)


def _platform_delete(target: RetractTarget, *, timeout_seconds: float) -> None:
    """Ask the network to delete the post; RetractRefused saying what went wrong (never a credential)."""
    action, platform, account = target.action, target.platform, target.account
    label, remote_id = platform.label, action.remote_id
    try:
        credentials = account_credentials(account=account)
    except CredentialsUnavailable as exc:
        raise RetractRefused(f"{_sentence(exc)}{_NOTHING}") from None
    try:
        platform.retract(account=account, credentials=credentials, remote_id=remote_id, timeout=timeout_seconds)
    except NotImplementedError:
        raise RetractRefused(
            f"{label} posts cannot be retracted by the AOL; delete post {remote_id} on {label} by hand.{_NOTHING}"
        ) from None
    except OutcomeUnknown as exc:
        raise RetractRefused(
            f"{label} gave no answer about deleting post {remote_id} ({str(exc).rstrip('.')}): it may or may not "
            f"be gone. Check it on {label}, then retract again.{_NOTHING} The action stays SUCCESS."
        ) from None
    except (AdapterError, AccountCheckFailed) as exc:
        raise RetractRefused(
            f"{label} did not delete post {remote_id}: {_sentence(exc)}{_NOTHING} The action stays SUCCESS."
        ) from None
    except Exception as exc:  # an SDK's own error: its text may quote the request, so only its kind is shown
        logger.warning("retract failed action=%s platform=%s error=%s", action.pk, platform.name, type(exc).__name__)
        raise RetractRefused(
            f"{label} could not be asked to delete post {remote_id} ({type(exc).__name__}); check the account "
            f"(aol_accounts verify {account.name}) and try again.{_NOTHING} The action stays SUCCESS."
        ) from None


def action_retract(
    *,
    action_ids: Iterable[Any],
    actor: str,
    reason: str,
    timeout_seconds: float = RETRACT_TIMEOUT_SECONDS,
) -> BulkReport:
    """Delete the post of one REAL SUCCESS POST_SOCIAL action on its network and mark the action RETRACTED.

    ``action_ids`` names exactly one action. NoEligibleActions or RetractRefused (both
    ControlChangeRejected), with nothing written, when it cannot be done.
    """
    verb = RETRACT_VERB
    reason = operator_reason_clean(reason=reason, actor=actor, verb="retract a post")
    chosen = list(action_ids)
    ids = action_ids_clean(action_ids=chosen, limit=max(len(chosen), 1), required=True) or []
    if len(ids) != 1:
        raise RetractRefused(
            f"Retract one action at a time ({len(ids)} were chosen): each deletes a live post.{_NOTHING}"
        )
    target = _target(ids[0])
    action, platform, account = target.action, target.platform, target.account
    _platform_delete(target, timeout_seconds=timeout_seconds)
    before = {
        "status": ActionStatus.SUCCESS,
        "platform": platform.name,
        "account": account.name,
        "remote_id": action.remote_id,
        "remote_url": action.remote_url,
    }
    with transaction.atomic():
        # SUCCESS is terminal for the daemon: only another retract can have moved it meanwhile.
        changed = (
            Action.objects.filter(pk=action.pk, status=ActionStatus.SUCCESS).update(
                status=ActionStatus.RETRACTED, updated_at=DbNow()
            )
            == 1
        )
        if changed:
            log_write(
                action_id=action.pk,
                level=LogLevel.WARNING,
                message=f"retract by {actor}: {platform.label} deleted post {action.remote_id} (posted as "
                f"{account.name}); SUCCESS → RETRACTED; reason: {reason}",
                actor=actor,
            )
        audit_write(
            actor=actor,
            verb=verb.audit_verb,
            outcome=AuditOutcome.DONE if changed else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=describe_ids([action.pk]),
            before=before,
            after={"status": ActionStatus.RETRACTED},
        )
    logger.info(
        "operator verb=%r actor=%s action=%s platform=%s remote_id=%s changed=%s reason=%r",
        verb.audit_verb,
        actor,
        action.pk,
        platform.name,
        action.remote_id,
        changed,
        reason,
    )
    return BulkReport(verb=verb, changed=[action.pk] if changed else [], unchanged=[] if changed else [action.pk])


RETRACT_VERB = OperatorVerb(
    name="retract",
    label="Retract",
    description="Delete the REAL post of the selected action on its network (mark it RETRACTED)",
    audit_verb="retract",
    permission=permissions.RETRACT_ACTION,
    service=action_retract,
    target=ACTIONS,
    outcome="have its post deleted on its network and become RETRACTED",
    bulk=BULK_SINGLE,
    eligible=(ActionStatus.SUCCESS,),
    eligible_text="a SUCCESS action",
    done="retracted (post deleted)",
    already="already retracted by someone else",
    danger=True,
    admin="retract_post",
    console=CONSOLE_ACTIONS,
    slug="retract",
    cli="aol_retract ID",
    applies_to=action_retractable,
)
