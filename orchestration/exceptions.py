"""Named errors of the orchestration layer. Each docstring is the default message."""

from datetime import datetime
from types import EllipsisType

from django.core.exceptions import ImproperlyConfigured


class AOLError(Exception):
    """The orchestration layer refused an operation."""

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidAction(AOLError, ValueError):
    """The action was rejected before anything was written."""

    #: The enqueue input the error is about (``action_type``, ``payload``, ``idempotency_key``,
    #: ``not_before``, ``priority``, ``requires_approval``), so an entry point can show the message
    #: next to that field; None when it is about the request as a whole.
    field: str | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None | EllipsisType = ...,  # ...: the class's own field
        items: tuple[int, ...] = (),
        idempotency_key: str | None = None,
    ):
        self.detail = message or (self.__doc__ or "").strip()
        if field is not ...:
            self.field = field
        #: 1-based positions of the bulk-enqueue items concerned (empty for a single enqueue), and
        #: the idempotency key of the one item.
        self.items = tuple(items)
        self.idempotency_key = idempotency_key
        super().__init__(self.located("Item"))

    def located(self, noun: str) -> str:
        """The message prefixed with the items it concerns: ``"Item 3 (key 'k'): …"``, ``"Items 1 and 3 …"``."""
        if not self.items:
            return self.detail
        if len(self.items) == 1:
            key = "" if self.idempotency_key is None else f" (key {self.idempotency_key!r})"
            return f"{noun} {self.items[0]}{key}: {self.detail}"
        return f"{noun}s {', '.join(map(str, self.items[:-1]))} and {self.items[-1]} {self.detail}"


class UnknownActionType(InvalidAction):
    """Unknown action type."""

    field = "action_type"


class InvalidPayload(InvalidAction):
    """The payload is not valid for this action type."""

    field = "payload"


class InvalidIdempotencyKey(InvalidPayload):
    """The idempotency key must be a non-empty string of printable characters."""

    field = "idempotency_key"


class InvalidNotBefore(InvalidPayload):
    """not_before must be a datetime that includes a timezone."""

    field = "not_before"


class IdempotencyConflict(InvalidAction):
    """This idempotency key is already used by an action with a different payload."""

    field = "idempotency_key"


class AdapterError(AOLError):
    """An adapter could not complete an action."""

    #: A permanent error goes straight to the DLQ; anything else is retried with backoff.
    permanent = False


class PermanentAdapterError(AdapterError):
    """The action can never succeed as it stands; retrying would not help."""

    permanent = True


class TransientAdapterError(AdapterError):
    """The action failed this time and may succeed if retried."""


class RetryLater(TransientAdapterError):
    """The remote side asked to be retried later (HTTP 429 or 503 with Retry-After)."""

    def __init__(self, message: str | None = None, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        #: When to try again, as the remote side said; the action's backoff is not used.
        self.retry_after_seconds = retry_after_seconds


class AccountRateLimited(RetryLater):
    """The platform rate-limited this account (HTTP 429 or its rate-limit headers) until a reset time.

    Not the action's fault: the daemon defers it, and every other action of the same account, until
    the reset, without counting an attempt.
    """

    def __init__(self, message: str | None = None, *, retry_after_seconds: float, account: str) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds)
        #: The connected account's name (``aol_accounts``) whose actions wait.
        self.account = account


class OutcomeUnknown(TransientAdapterError):
    """The request went out but no answer came (timeout, dropped connection): it may have had its effect.

    An idempotent attempt is retried (the remote side recognises the retry); a non-idempotent one is
    parked as NEEDS_REVIEW for a person, unless the adapter found the effect and reported SUCCESS.
    """


class ArtifactStoreUnavailable(TransientAdapterError):
    """The artifacts directory cannot be written (full, read-only or missing): the environment failed, not the action.

    The daemon returns the action to the queue without counting the attempt and pauses claiming
    until the directory passes its probe again.
    """


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

    def __init__(self, message: str | None = None, *, holder: str = "", expires_at: datetime | None = None) -> None:
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

    field = "priority"


class ApprovalRefused(ControlChangeRejected):
    """The approval or rejection was refused; nothing changed."""


class NoEligibleActions(ControlChangeRejected):
    """None of the chosen actions is in a status this operator verb acts on; nothing changed."""


# --- API tokens (services/tokens.py) -------------------------------------------------------------


class TokenRefused(AOLError):
    """The API token is missing, unknown, revoked or expired."""


class TokenScopeMissing(AOLError):
    """The API token lacks the scope this request needs."""

    def __init__(self, message: str | None = None, *, scope: str = "") -> None:
        self.scope = scope
        super().__init__(message)


class TokenRateLimited(AOLError):
    """This API token made too many write requests this minute (AOL_API_WRITES_PER_MINUTE); try again later."""

    def __init__(self, message: str | None = None, *, retry_after_seconds: int = 60) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)


class InvalidToken(ControlChangeRejected):
    """The token could not be created or changed as asked; nothing was written."""


class ArtifactNotFound(AOLError, LookupError):
    """The artifact is not in its store (deleted, pruned, or the reference is malformed)."""


class ArtifactStoreMisconfigured(ImproperlyConfigured):
    """AOL_ARTIFACT_STORE must be "files" or "database"."""


class InvalidAccount(ControlChangeRejected):
    """The connected account could not be added, changed or removed as asked; nothing was written."""


class CredentialsUnavailable(AOLError, ImproperlyConfigured):
    """Connected accounts' credentials cannot be encrypted or decrypted: set AOL_CREDENTIALS_KEYS."""


class RetractRefused(ControlChangeRejected):
    """The post could not be retracted (not a REAL post, no integration, or the platform refused); nothing changed."""


class AccountCheckFailed(AOLError):
    """The platform refused the account's credentials or could not be reached; the message says what to fix."""
