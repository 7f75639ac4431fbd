"""One attempt: run an action through its adapter on the worker thread and record what came of it.

``Dispatcher`` runs on the loop's thread; only ``_execute`` runs on the worker thread, and only
the dispatcher records, and only what it waited for. ``BatchRecorder`` holds the successes of
batch-claimed actions until they are recorded together.
"""

import logging
import time
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from orchestration.adapters import ActionResult, Attempt
from orchestration.conf import action_type_settings
from orchestration.daemon.config import DaemonConfig
from orchestration.daemon.outages import Outages
from orchestration.daemon.runner import AdapterRunner, RunnerPool, _Job
from orchestration.daemon.state import DaemonState
from orchestration.exceptions import (
    AccountRateLimited,
    ArtifactStoreUnavailable,
    AttemptDeadlineExceeded,
    AttemptInterrupted,
    InvalidAction,
    OutcomeUnknown,
    PermanentAdapterError,
    RetryLater,
)
from orchestration.models import AccountRateLimit, Action, ActionStatus, ClaimedMode
from orchestration.services.account_limits import (
    account_holds_active,
    account_rate_limit_hold,
    action_exclusive_key,
    action_return_claimed_for_account,
)
from orchestration.services.approval import action_approval_gated, approval_check_proof_run, approval_verify_before_real
from orchestration.services.claim import action_claim_due
from orchestration.services.enqueue import action_payload_validate
from orchestration.services.results import (
    Success,
    action_mark_awaiting_approval,
    action_mark_cancelled_if_requested,
    action_mark_failure,
    action_mark_interrupted,
    action_mark_needs_review,
    action_mark_success_many,
    action_outcome_unknown_policy,
)

logger = logging.getLogger("orchestration")

# Outcomes of one attempt, for the tick's counts.
SUCCEEDED, FAILED, INTERRUPTED = "succeeded", "failed", "interrupted"
CANCELLED = "cancelled"  # stopped on an operator's request (not counted as attempted, like INTERRUPTED)
BLOCKED = "blocked"  # the artifact store failed, not the action (not counted as attempted)
DEFERRED = "deferred"  # the platform rate-limited the account: back to the queue uncounted (not counted as attempted)
#: Outcomes a tick does not count as attempted.
UNCOUNTED_OUTCOMES = (INTERRUPTED, CANCELLED, BLOCKED, DEFERRED)


class BatchRecorder:
    """Records successes, those of batch-claimed actions together in one transaction (fenced).

    It owns the rule that makes batching safe: what waits is recorded before the next claim
    (``claim_due``), before any other outcome (``flush``, so results keep their order) and when
    the tick's work ends. A crash therefore redoes at most one batch.
    """

    def __init__(self, *, state: DaemonState, actor: str):
        self._state = state
        self._actor = actor
        self._waiting: list[Success] = []
        #: Accounts a platform rate-limited, by exclusive key: read from the database once per lease tenure
        #: (``holds_forget``), then kept here as this daemon, the only writer while it holds the lease, adds them.
        self._holds: dict[str, AccountRateLimit] | None = None

    def holds(self) -> dict[str, AccountRateLimit]:
        if self._holds is None:
            self._holds = account_holds_active()
        return self._holds

    def hold_add(self, hold: AccountRateLimit) -> None:
        self.holds()[hold.key] = hold

    def holds_forget(self) -> None:
        """A new lease tenure: an earlier holder may have written holds; read them again at the next claim."""
        self._holds = None

    def success(self, success: Success, *, batched: bool) -> None:
        """Record a success now, or, for a batch-claimed action, with the rest of its batch."""
        self._waiting.append(success)
        if not batched:
            self.flush()

    def flush(self) -> None:
        """Record the successes waiting, in one transaction."""
        if self._waiting:
            successes, self._waiting = self._waiting, []
            action_mark_success_many(successes=successes, token=self._state.held_token(), actor=self._actor)

    def claim_due(self, *, limit: int, proof: bool, exclusive: frozenset[str] | None = None) -> list[Action]:
        """Record what waits, then claim up to ``limit`` due actions, in one transaction.

        One commit instead of two per batch: the commit's WAL flush, not the statements, is what a
        batch's bookkeeping waits for. If the claim fails the successes roll back with it and stay
        RUNNING, as if the daemon had crashed before recording them: the next lease holder's
        recovery returns them to the queue uncounted (they were batch-claimed) and their re-run
        finds the artifact already there. A crash still redoes at most one batch.
        """
        token = self._state.held_token()
        if not self._waiting:  # nothing to record: the claim's own transaction (an idle tick stays as it was)
            return self._claim(token=token, limit=limit, proof=proof, exclusive=exclusive)
        with transaction.atomic():
            self.flush()
            return self._claim(token=token, limit=limit, proof=proof, exclusive=exclusive)

    def _claim(self, *, token: int, limit: int, proof: bool, exclusive: frozenset[str] | None) -> list[Action]:
        holds = None if proof else self.holds()
        return action_claim_due(
            owner=self._actor, token=token, limit=limit, proof=proof, exclusive=exclusive, holds=holds
        )

    def drop(self) -> None:
        """Forget what waits: the next lease holder's recovery returns those actions to the queue."""
        self._waiting = []


@dataclass
class Started:
    """One attempt in flight: what ``Dispatcher.finish`` needs to record it once the loop stops waiting."""

    action: Action
    attempt: Attempt
    for_approval: bool
    deadline: float  # monotonic: the loop stops waiting for it then
    timeout: float | None  # the action type's timeout (AOL_ACTION_TYPES), if it has one
    type_limited: bool  # the type's timeout, not the tick's budget, sets the deadline
    runner: AdapterRunner | None = None
    job: _Job | None = None

    def call(self) -> ActionResult:
        """The worker thread's part: validate again and run the adapter."""
        return _execute(self.action, self.attempt, self.for_approval)


class Dispatcher:
    """Runs one claimed action through its adapter and records the outcome (fencing errors propagate)."""

    def __init__(
        self,
        *,
        config: DaemonConfig,
        state: DaemonState,
        recorder: BatchRecorder,
        runners: RunnerPool,
        outages: Outages,
    ):
        self.config = config
        self.state = state
        self.recorder = recorder
        self.runners = runners
        self.outages = outages

    def dispatch(self, action: Action, *, proof: bool, deadline: float) -> str:
        """Run one attempt on the worker thread and record its outcome; returns the outcome."""
        started = self.begin(action, proof=proof, deadline=deadline)
        if isinstance(started, str):
            return started
        started.runner = runner = self.runners.first
        try:
            started.job = runner.call(started.call, deadline=started.deadline)
        finally:
            self.state.attempt_ended(started.attempt)
        return self.finish(started)

    def begin(self, action: Action, *, proof: bool, deadline: float) -> "Started | str":
        """Prepare one attempt (in flight from now on for stop requests), or the outcome if it must not start."""
        state = self.state
        if action.pk in state.cancel_requested and self._cancel_if_requested(
            action, outcome="did not start (it was still waiting in a claimed batch)"
        ):
            return CANCELLED
        hold = self._held(action, proof=proof)
        if hold is not None:
            action_return_claimed_for_account(
                action=action, hold=hold, token=state.held_token(), actor=self.config.owner
            )
            return DEFERRED
        # The claim decides the attempt's mode: a REAL daemon runs an action gated by approval in
        # PROOF first, to make the artifact a person approves (services/approval.py).
        for_approval = not proof and action.claimed_mode == ClaimedMode.PROOF
        timeout = action_type_settings(action.action_type).timeout_seconds
        type_deadline = time.monotonic() + timeout if timeout is not None else None
        attempt_deadline = deadline if type_deadline is None else min(deadline, type_deadline)
        attempt = Attempt(
            idempotency_key=action.idempotency_key,
            number=action.attempts,
            proof=proof or for_approval,
            deadline=attempt_deadline,
            action_id=action.pk,
        )
        state.attempt_started(attempt)
        # A kill, stop or lost lease that came in since the last check.
        halt = state.halt_reason()
        if halt:
            attempt.request_stop(halt)
        return Started(
            action=action,
            attempt=attempt,
            for_approval=for_approval,
            deadline=attempt_deadline,
            timeout=timeout,
            type_limited=type_deadline is not None and type_deadline < deadline,
        )

    def finish(self, started: "Started", *, success_waits: bool = False) -> str:
        """Record the outcome of an attempt the loop no longer waits for (done, or overran: abandoned).

        ``success_waits``: a success waits to be recorded with the next claim, in its transaction
        (``BatchRecorder.claim_due``), as a batch member's does; the caller flushes when no claim follows.
        """
        state = self.state
        action, attempt, job = started.action, started.attempt, started.job
        assert job is not None and started.runner is not None
        timeout, type_limited = started.timeout, started.type_limited
        done = job.done.is_set()
        if done and job.error is None and not started.for_approval:
            self._record_success(action, job.result, waits=success_waits)
            state.store_failures = 0
            return SUCCEEDED
        self.recorder.flush()  # keep the order of results: earlier successes first
        if not done:
            # Overran: stop waiting. The thread runs on but nobody will read its result.
            attempt.request_stop("deadline exceeded")
            started.runner.abandon()
            if self.runners.abandoned_alive() >= self.config.max_abandoned_threads:
                state.wedged = True
            return self._record_unknown_outcome(
                action, self._overran(action, timeout=timeout, type_limited=type_limited)
            )
        if job.error is None:
            return self._record_awaiting_approval(action, job.result)
        exc = job.error
        if isinstance(exc, ArtifactStoreUnavailable):
            return self._record_store_unavailable(action, exc)
        if isinstance(exc, AccountRateLimited):
            return self._record_account_rate_limited(action, exc)
        if isinstance(exc, AttemptInterrupted):
            if self._cancel_if_requested(action, outcome=f"stopped at a safe point ({exc})"):
                return CANCELLED
            action_mark_interrupted(action=action, token=state.held_token(), actor=self.config.owner, reason=str(exc))
            logger.info("action id=%s type=%s interrupted: %s", action.pk, action.action_type, exc)
            return INTERRUPTED
        if isinstance(exc, OutcomeUnknown):
            return self._record_unknown_outcome(action, exc)
        if isinstance(exc, AttemptDeadlineExceeded):
            return self._record_unknown_outcome(
                action, self._overran(action, timeout=timeout, type_limited=type_limited)
            )
        if self._cancel_if_requested(action, outcome=f"failed: {type(exc).__name__}: {exc}"):
            return CANCELLED
        permanent = isinstance(exc, InvalidAction) or getattr(exc, "permanent", False)
        if not permanent and not hasattr(exc, "permanent"):
            logger.error(
                "action id=%s type=%s raised unexpectedly",
                action.pk,
                action.action_type,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        status = action_mark_failure(
            action=action,
            token=state.held_token(),
            actor=self.config.owner,
            error=f"{type(exc).__name__}: {exc}",
            permanent=permanent,
            retry_after_seconds=exc.retry_after_seconds if isinstance(exc, RetryLater) else None,
        )
        logger.info("action id=%s type=%s status=%s error=%s", action.pk, action.action_type, status, exc)
        return FAILED

    def _overran(self, action: Action, *, timeout: float | None, type_limited: bool) -> AttemptDeadlineExceeded:
        """The error of an attempt that overran: the type's timeout, or the tick's budget if that came first."""
        return AttemptDeadlineExceeded(self._overrun_message(action, timeout=timeout if type_limited else None))

    def _overrun_message(self, action: Action | None = None, *, timeout: float | None = None) -> str:
        if timeout is not None and action is not None:
            return (
                f"exceeded its deadline (the {action.action_type} timeout of {timeout:g}s, "
                "AOL_ACTION_TYPES) and was abandoned"
            )
        return (
            f"exceeded its deadline (the tick budget of {self.config.max_tick_seconds:g}s, "
            "AOL_MAX_TICK_SECONDS) and was abandoned"
        )

    def _cancel_if_requested(self, action: Action, *, outcome: str) -> bool:
        if not action_mark_cancelled_if_requested(
            action=action, token=self.state.held_token(), actor=self.config.owner, outcome=outcome
        ):
            return False
        logger.info(
            "action id=%s type=%s status=%s (%s)", action.pk, action.action_type, ActionStatus.CANCELLED, outcome
        )
        return True

    def _record_awaiting_approval(self, action: Action, result: ActionResult) -> str:
        """A gated action's PROOF run is done: park it for a person, or fail it if it made no artifact."""
        if self._cancel_if_requested(action, outcome="made its PROOF artifact, but was cancelled before approval"):
            return CANCELLED
        if not result.artifact_ref or not result.artifact_sha256:
            action_mark_failure(
                action=action,
                token=self.state.held_token(),
                actor=self.config.owner,
                error="the PROOF run for approval made no artifact, so there is nothing to approve",
                permanent=True,
            )
            return FAILED
        action_mark_awaiting_approval(
            action=action,
            token=self.state.held_token(),
            actor=self.config.owner,
            artifact_ref=result.artifact_ref,
            artifact_sha256=result.artifact_sha256,
            pending_artifact=result.pending_artifact,
        )
        logger.info(
            "action id=%s type=%s status=%s sha256=%s",
            action.pk,
            action.action_type,
            ActionStatus.AWAITING_APPROVAL,
            result.artifact_sha256,
        )
        return SUCCEEDED

    def _record_success(self, action: Action, result: ActionResult, *, waits: bool = False) -> None:
        message, ref, sha256 = result.message, result.artifact_ref, result.artifact_sha256
        if action.approved_at is not None and action.claimed_mode == ClaimedMode.REAL:
            # Name what a person approved beside what was done.
            message = f"{message} (approved by {action.approved_by or '?'}: sha256 {action.approval_sha256})"
            ref, sha256 = ref or action.approval_artifact_ref, sha256 or action.approval_sha256
        success = Success(
            action,
            message,
            ref,
            sha256,
            finished_at=timezone.now(),
            remote_id=result.remote_id,
            remote_url=result.remote_url,
            pending_artifact=result.pending_artifact,
        )
        self.recorder.success(success, batched=action.claimed_in_batch or waits)
        logger.info(
            "action id=%s type=%s status=%s artifact=%s remote_id=%s",
            action.pk,
            action.action_type,
            ActionStatus.SUCCESS,
            result.artifact_ref or "-",
            result.remote_id or "-",
        )

    def _record_unknown_outcome(self, action: Action, exc: Exception) -> str:
        """An attempt that may or may not have had its effect: retry it, or park it for review.

        A cancel request ends it CANCELLED instead of retrying, unless a person must look at it.
        """
        error = f"{type(exc).__name__}: {exc}"
        policy = action_outcome_unknown_policy(
            action_type=action.action_type, claimed_mode=action.claimed_mode, payload=action.payload
        )
        if policy == ActionStatus.NEEDS_REVIEW:
            action_mark_needs_review(action=action, token=self.state.held_token(), actor=self.config.owner, error=error)
            status: str = ActionStatus.NEEDS_REVIEW
        elif self._cancel_if_requested(action, outcome=f"failed: {error}"):
            return CANCELLED
        else:
            status = action_mark_failure(
                action=action, token=self.state.held_token(), actor=self.config.owner, error=error, permanent=False
            )
        logger.warning("action id=%s type=%s status=%s error=%s", action.pk, action.action_type, status, exc)
        return FAILED

    def _record_account_rate_limited(self, action: Action, exc: AccountRateLimited) -> str:
        """The platform rate-limited the account: back to the queue uncounted, the account's actions held until
        its reset (services/account_limits.py)."""
        if self._cancel_if_requested(action, outcome=f"was rate-limited by the platform: {exc}"):
            return CANCELLED
        hold = account_rate_limit_hold(
            action=action,
            account=exc.account,
            retry_after_seconds=exc.retry_after_seconds,
            error=f"{type(exc).__name__}: {exc}",
            token=self.state.held_token(),
            actor=self.config.owner,
        )
        self.recorder.hold_add(hold)
        return DEFERRED

    def _held(self, action: Action, *, proof: bool) -> AccountRateLimit | None:
        """The hold on the account of a claimed REAL action that a 429 met since it was claimed (a batch member)."""
        if proof or action.claimed_mode != ClaimedMode.REAL or not (holds := self.recorder.holds()):
            return None
        hold = holds.get(action_exclusive_key(action_type=action.action_type, payload=action.payload) or "")
        if hold is None or hold.reset_at <= timezone.now():
            return None
        return hold

    def _record_store_unavailable(self, action: Action, exc: ArtifactStoreUnavailable) -> str:
        """The artifact store failed, not the action: return it to the queue uncounted and pause claiming."""
        self.outages.store_failed(exc)
        if self._cancel_if_requested(action, outcome=f"not run: {exc}"):
            return CANCELLED
        action_mark_interrupted(
            action=action,
            token=self.state.held_token(),
            actor=self.config.owner,
            reason=f"artifact store unavailable: {exc}",
        )
        logger.info("action id=%s type=%s returned to the queue uncounted: %s", action.pk, action.action_type, exc)
        return BLOCKED


def _execute(action: Action, attempt: Attempt, for_approval: bool = False) -> ActionResult:
    """Validate the stored payload again and run the adapter (on the worker thread).

    The approval gate's checks run here, just before the adapter: a PROOF run for approval needs an
    adapter that can re-render its artifact; a REAL run of an approved action must render exactly
    the approved content; a REAL run of a gated action that nobody approved is refused.
    """
    adapter, _ = action_payload_validate(action_type=action.action_type, payload=action.payload)
    if for_approval:
        approval_check_proof_run(adapter=adapter, action=action)
    elif not attempt.proof and action.approved_at is not None:
        approval_verify_before_real(adapter=adapter, action=action)
    elif not attempt.proof and action_approval_gated(action=action):
        raise PermanentAdapterError(f"{action.action_type} requires approval before it runs for real; not run")
    return adapter.execute(action, attempt=attempt)
