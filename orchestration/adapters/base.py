"""The adapter interface: one class per action type."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from orchestration.exceptions import InvalidPayload, RealRunUnconfigured

if TYPE_CHECKING:
    from orchestration.models import Action


@dataclass(frozen=True)
class ActionResult:
    """What an adapter did, for the execution log."""

    message: str
    artifact_ref: str = ""
    artifact_sha256: str = ""


class ActionAdapter:
    """Validates and executes one action type.

    ``validate`` runs at enqueue time (nothing is written when it raises) and again before
    execution. ``execute`` raises ``PermanentAdapterError`` for errors a retry cannot fix and
    anything else for errors worth retrying with backoff.
    """

    action_type: ClassVar[str]
    description: ClassVar[str] = ""
    #: Running it twice for one idempotency key has the effect of running it once.
    is_idempotent: ClassVar[bool] = True
    #: Has a REAL integration; without one, REAL mode refuses with RealRunUnconfigured.
    supports_real: ClassVar[bool] = False
    #: What to configure to enable REAL mode, for the refusal message.
    real_setup_hint: ClassVar[str] = "No REAL integration exists for this action type yet; keep PROOF mode on."

    def validate(self, payload: dict[str, Any]) -> None:
        """Raise InvalidPayload naming what is wrong with ``payload``."""

    def real_problem(self) -> str:
        """Why REAL mode would be refused right now, or '' when it would run (adapters with settings
        to check override this)."""
        return "" if self.supports_real else self.real_setup_hint

    def execute(self, action: "Action", *, proof: bool) -> ActionResult:
        if proof:
            return self.execute_proof(action)
        if not self.supports_real:
            raise RealRunUnconfigured(f"{self.action_type} cannot run in REAL mode: {self.real_setup_hint}")
        return self.execute_real(action)

    def execute_proof(self, action: "Action") -> ActionResult:
        raise NotImplementedError

    def execute_real(self, action: "Action") -> ActionResult:
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
