"""SLEEP: a drill action. Wait N seconds, then succeed or fail on purpose; touches nothing else.

Operators and tests use it to rehearse slow and failing actions (failover, kill, the tick
budget) without any real adapter. It honours the daemon's stop request and deadline while it
waits, and in PROOF mode writes one small artifact per action once it is done, so "this ran
exactly once" can be checked from the artifacts directory.
"""

from typing import TYPE_CHECKING, Any

from orchestration.adapters.artifacts import proof_artifact_ref
from orchestration.adapters.base import ActionAdapter, ActionResult, Attempt, ProofRender
from orchestration.adapters.store import artifact_put
from orchestration.exceptions import InvalidPayload, PermanentAdapterError, TransientAdapterError

if TYPE_CHECKING:
    from orchestration.models import Action

#: The longest drill sleep accepted, in seconds.
MAX_SLEEP_SECONDS = 600
FAILURES = ("transient", "permanent")


class SleepAdapter(ActionAdapter):
    action_type = "SLEEP"
    description = (
        'Drill: wait, then succeed (or fail on purpose). Payload: {"seconds": 2} or '
        '{"seconds": 2, "fail": "transient"|"permanent"}'
    )
    # It has no effect outside its PROOF artifact, so REAL mode is as safe as PROOF.
    supports_real = True

    def validate(self, payload: dict[str, Any]) -> None:
        problems = []
        seconds = payload.get("seconds")
        if seconds is None:
            problems.append("'seconds' is required")
        elif isinstance(seconds, bool) or not isinstance(seconds, int | float):
            problems.append(f"'seconds' must be a number, not {type(seconds).__name__}")
        elif not 0 <= seconds <= MAX_SLEEP_SECONDS:
            problems.append(f"'seconds' must be between 0 and {MAX_SLEEP_SECONDS}, got {seconds}")
        fail = payload.get("fail")
        if fail is not None and fail not in FAILURES:
            problems.append(f"'fail' must be one of {', '.join(map(repr, FAILURES))}, got {fail!r}")
        unknown = sorted(set(payload) - {"seconds", "fail"})
        if unknown:
            problems.append(f"unknown field(s) {', '.join(map(repr, unknown))} (allowed: fail, seconds)")
        if problems:
            raise InvalidPayload("; ".join(problems) + ".")

    def _sleep(self, action: "Action", attempt: Attempt) -> None:
        attempt.sleep(float(action.payload["seconds"]))
        fail = action.payload.get("fail")
        if fail == "permanent":
            raise PermanentAdapterError("SLEEP drill: permanent failure, as the payload asked")
        if fail == "transient":
            raise TransientAdapterError("SLEEP drill: transient failure, as the payload asked")

    def proof_render(self, action: "Action") -> ProofRender:
        content = (
            "AICMO PROOF artifact: SLEEP drill, nothing was done.\n"
            f"action_id: {action.pk}\n"
            f"idempotency_key: {action.idempotency_key}\n"
            f"created_at: {action.created_at.isoformat()}\n"
            f"seconds: {action.payload['seconds']}\n"
        ).encode()
        return ProofRender(ref=proof_artifact_ref(action=action, folder="sleep"), content=content)

    def execute_proof(self, action: "Action", *, attempt: Attempt) -> ActionResult:
        self._sleep(action, attempt)
        render = self.proof_render(action)
        stored = artifact_put(name=render.ref, content=render.content)
        found = "; artifact from an earlier attempt verified, not rewritten" if stored.already_there else ""
        return ActionResult.with_artifact(f"PROOF: slept {action.payload['seconds']}s{found}", stored)

    def execute_real(self, action: "Action", *, attempt: Attempt) -> ActionResult:
        self._sleep(action, attempt)
        return ActionResult(message=f"slept {action.payload['seconds']}s")
