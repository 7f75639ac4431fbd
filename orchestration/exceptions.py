"""Named errors of the orchestration layer. Each docstring is the default message."""

from django.core.exceptions import ImproperlyConfigured


class AOLError(Exception):
    """The orchestration layer refused an operation."""

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidAction(AOLError, ValueError):
    """The action was rejected before anything was written."""


class UnknownActionType(InvalidAction):
    """Unknown action type."""


class InvalidPayload(InvalidAction):
    """The payload is not valid for this action type."""


class IdempotencyConflict(InvalidAction):
    """This idempotency key is already used by an action with a different payload."""


class AdapterError(AOLError):
    """An adapter could not complete an action."""

    #: A permanent error goes straight to the DLQ; anything else is retried with backoff.
    permanent = False


class PermanentAdapterError(AdapterError):
    """The action can never succeed as it stands; retrying would not help."""

    permanent = True


class TransientAdapterError(AdapterError):
    """The action failed this time and may succeed if retried."""


class ArtifactConflict(PermanentAdapterError):
    """An artifact with other content already has this action's artifact name; it is never replaced."""


class AttemptDeadlineExceeded(TransientAdapterError):
    """The attempt exceeded its deadline (the tick's time budget) and was abandoned."""


class AttemptInterrupted(AdapterError):
    """The daemon asked the attempt to stop (kill flag, shutdown, lost lease) and it stopped at a safe point.

    The adapter promises that running the action again is safe; the daemon returns it to the
    queue without counting the attempt.
    """


class RealRunUnconfigured(PermanentAdapterError, ImproperlyConfigured):
    """REAL mode was asked for, but this adapter has no real integration configured."""


class LeaseNotHeld(AOLError):
    """This daemon does not hold the lease (another took over, or it expired): it must stop writing."""


class LeaseHeldElsewhere(AOLError):
    """Another live daemon holds the lease."""

    def __init__(self, message: str | None = None, *, holder: str = "", expires_at=None):
        super().__init__(message)
        self.holder = holder
        self.expires_at = expires_at


class ControlChangeRejected(AOLError):
    """The control change was rejected."""


class LLMUnconfigured(PermanentAdapterError, ImproperlyConfigured):
    """This action type needs the LLM, which is disabled; see llm.runtime.require_llm for how to enable it."""


# --- Flow control (docs/flow-control.md) ---------------------------------------------------------------


class InvalidPriority(InvalidAction):
    """The priority must be a whole number from -100 to 100."""


class ApprovalRefused(ControlChangeRejected):
    """The approval or rejection was refused; nothing changed."""


class CancelRefused(ControlChangeRejected):
    """The cancellation was refused; nothing changed."""
