"""The adapter interface: one class per action type."""

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from orchestration.adapters.store import PendingArtifact, StoredArtifact
from orchestration.exceptions import (
    AttemptDeadlineExceeded,
    AttemptInterrupted,
    InvalidPayload,
    RealRunUnconfigured,
)

if TYPE_CHECKING:
    from orchestration.models import Action


@dataclass(frozen=True)
class ActionResult:
    """What an adapter did, for the execution log.

    A REAL run that made something in the world says what: ``remote_id`` (the remote side's id of
    it: a post id, an email's Message-ID, an event id) and ``remote_url`` (where a person can see it);
    both are recorded on the action with its SUCCESS.
    """

    message: str
    artifact_ref: str = ""
    artifact_sha256: str = ""
    #: The database store's artifact, written in the transaction that records this result.
    pending_artifact: PendingArtifact | None = None
    remote_id: str = ""
    remote_url: str = ""

    @classmethod
    def with_artifact(cls, message: str, artifact: StoredArtifact) -> "ActionResult":
        """A result whose artifact ``artifact_put`` stored (or left pending for the record)."""
        return cls(
            message=message,
            artifact_ref=artifact.ref,
            artifact_sha256=artifact.sha256,
            pending_artifact=artifact.pending,
        )


@dataclass(frozen=True)
class ProofRender:
    """A PROOF artifact's name and exact bytes, rendered without writing anything."""

    ref: str
    content: bytes


@dataclass
class Attempt:
    """One execution of an action, as the adapter sees it.

    ``idempotency_key`` is the action's key: a REAL adapter hands it to the remote API (as an
    ``Idempotency-Key`` header, a Message-ID, a client reference …) so that a retry after a crash
    with an unknown outcome is recognised by the remote side and has its effect once.

    ``deadline`` (a ``time.monotonic()`` value) is when the daemon stops waiting: after it the
    attempt is abandoned and recorded as a transient failure, so a long adapter should check
    ``remaining_seconds()`` or call ``checkpoint()`` / ``sleep()`` between steps; these also raise
    AttemptInterrupted once the daemon asks the attempt to stop (kill flag, shutdown, lost lease).
    """

    idempotency_key: str
    number: int = 1  # 1 for the first attempt
    proof: bool = True
    deadline: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    stop_reason: str = ""
    #: The action's id, so the daemon's watchdog can pass on an operator's cancel request.
    action_id: int | None = None

    def request_stop(self, reason: str) -> None:
        """Ask the attempt to stop at its next check (safe from any thread)."""
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    def remaining_seconds(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def checkpoint(self) -> None:
        """Raise if the attempt must stop now: interrupted, or past its deadline."""
        if self.stop.is_set():
            raise AttemptInterrupted(f"stopped at a safe point: {self.stop_reason or 'stop requested'}")
        remaining = self.remaining_seconds()
        if remaining is not None and remaining <= 0:
            raise AttemptDeadlineExceeded()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, waking early (and raising as ``checkpoint``) on a stop or the deadline."""
        remaining = self.remaining_seconds()
        wait = seconds if remaining is None else min(seconds, max(remaining, 0.0))
        self.stop.wait(wait)
        if self.stop.is_set() or wait < seconds:
            self.checkpoint()
            if wait < seconds:  # the deadline cut the sleep short
                raise AttemptDeadlineExceeded()


class ActionAdapter:
    """Validates and executes one action type.

    ``validate`` runs at enqueue time (nothing is written when it raises) and again before
    execution. ``execute`` raises ``PermanentAdapterError`` for errors a retry cannot fix,
    ``AttemptInterrupted`` when it stopped early on request (see ``Attempt``) and anything else for
    errors worth retrying with backoff. The daemon runs it in a worker thread and stops waiting at
    the attempt's deadline; a late result is never recorded.
    """

    action_type: ClassVar[str]
    description: ClassVar[str] = ""
    #: Running it twice for one idempotency key has the effect of running it once.
    is_idempotent: ClassVar[bool] = True
    #: Has a REAL integration; without one, REAL mode refuses with RealRunUnconfigured.
    supports_real: ClassVar[bool] = False
    #: What to configure to enable REAL mode, for the refusal message.
    real_setup_hint: ClassVar[str] = "No REAL integration exists for this action type yet; keep PROOF mode on."
    #: Payload fields a rate limit may use as its key (empty: any field name is accepted).
    rate_key_fields: ClassVar[tuple[str, ...]] = ()

    def idempotent_for(self, payload: dict[str, Any]) -> bool:
        """Is running this payload twice the same as once? (``is_idempotent`` unless it depends on the payload,
        as POST_SOCIAL's does on the platform.)"""
        return self.is_idempotent

    def supports_real_for(self, payload: dict[str, Any]) -> bool:
        """Can this payload run in REAL mode at all? (``supports_real`` unless it depends on the payload, as
        POST_SOCIAL's does on naming a connected account of a network with an integration.)"""
        return self.supports_real

    def exclusive_key(self, payload: dict[str, Any]) -> str | None:
        """Actions with the same key never run at the same time in REAL mode (one account's posts); None: any."""
        return None

    @property
    def supports_approval(self) -> bool:
        """Its PROOF artifact can be re-rendered exactly (``proof_render``), so an approval can be bound
        to it: the approval gate checks, before the REAL run, that the content is still the approved one."""
        return type(self).proof_render is not ActionAdapter.proof_render

    def proof_render(self, action: "Action") -> ProofRender:
        """The PROOF artifact of ``action`` (name and bytes) without writing it.

        Adapters whose PROOF content depends only on the action implement it (and write what it
        returns in ``execute_proof``); the approval gate needs it.
        """
        raise NotImplementedError(f"{self.action_type} cannot re-render its PROOF artifact")

    def validate(self, payload: dict[str, Any]) -> None:
        """Raise InvalidPayload naming what is wrong with ``payload``."""

    def real_problem(self) -> str:
        """Why REAL mode would be refused right now, or '' when it would run (adapters with settings
        to check override this)."""
        return "" if self.supports_real else self.real_setup_hint

    def execute(self, action: "Action", *, proof: bool | None = None, attempt: Attempt | None = None) -> ActionResult:
        """Run ``action`` once; pass ``attempt`` (the daemon does) or just ``proof`` (unbounded attempt)."""
        if attempt is None:
            attempt = Attempt(idempotency_key=action.idempotency_key, number=action.attempts or 1, proof=bool(proof))
        if attempt.proof:
            return self.execute_proof(action, attempt=attempt)
        if not self.supports_real:
            raise RealRunUnconfigured(f"{self.action_type} cannot run in REAL mode: {self.real_setup_hint}")
        return self.execute_real(action, attempt=attempt)

    def execute_proof(self, action: "Action", *, attempt: Attempt) -> ActionResult:
        """Write what would be done as an artifact (see store.artifact_put: once per action)."""
        raise NotImplementedError

    def execute_real(self, action: "Action", *, attempt: Attempt) -> ActionResult:
        """Act for real, handing ``attempt.idempotency_key`` to the remote side.

        An adapter that cannot make its effect idempotent must set ``is_idempotent = False``: an
        attempt of it whose outcome is unknown (its daemon died, or it overran its deadline) is
        parked as NEEDS_REVIEW instead of being retried.
        """
        raise NotImplementedError


def require_fields(payload: dict[str, Any], *, required: dict[str, type], optional: dict[str, type]) -> None:
    """Check a payload's keys and value types, naming every problem at once."""
    problems = []
    for name, kind in required.items():
        value = payload.get(name)
        if value is None:
            problems.append(f"'{name}' is required")
        elif not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            problems.append(f"'{name}' must be a {kind.__name__}, not {type(value).__name__}")
        elif isinstance(value, str) and not value.strip():
            problems.append(f"'{name}' must not be empty")
    for name, kind in optional.items():
        if name in payload and payload[name] is not None and not isinstance(payload[name], kind):
            problems.append(f"'{name}' must be a {kind.__name__}, not {type(payload[name]).__name__}")
    unknown = sorted(set(payload) - set(required) - set(optional))
    if unknown:
        allowed = ", ".join(sorted([*required, *optional]))
        problems.append(f"unknown field(s) {', '.join(map(repr, unknown))} (allowed: {allowed})")
    if problems:
        raise InvalidPayload("; ".join(problems) + ".")
