"""Fake adapters, one per failure mode the drill action SLEEP cannot play (it is always cooperative).

Registered only in tests, through AOL_EXTRA_ADAPTERS (see ``FAKE_ADAPTERS``), so that no shipped
adapter carries code that hangs or kills its process on purpose.
"""

import os
import time
from typing import Any

from orchestration.adapters.artifacts import proof_artifact_ref, sha256_bytes
from orchestration.adapters.base import ActionAdapter, ActionResult, Attempt
from orchestration.adapters.post_social import PostSocialAdapter
from orchestration.adapters.store import artifact_put
from orchestration.conf import aol
from orchestration.exceptions import InvalidPayload, PermanentAdapterError

#: The exit status of a process killed by CRASH.
CRASH_EXIT_CODE = 70

FAKE_ADAPTERS = [
    "tests.fake_adapters.HangAdapter",
    "tests.fake_adapters.HangRealNonIdempotentAdapter",
    "tests.fake_adapters.CrashAdapter",
    "tests.fake_adapters.CrashRealNonIdempotentAdapter",
]


def _artifact(action, adapter: ActionAdapter) -> tuple[str, bytes]:
    ref = proof_artifact_ref(action=action, folder=adapter.action_type.lower())
    content = f"{adapter.action_type} drill\naction_id: {action.pk}\nkey: {action.idempotency_key}\n".encode()
    return ref, content


def _number(payload: dict[str, Any], name: str, *, required: bool) -> None:
    value = payload.get(name)
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidPayload(f"'{name}' must be a number >= 0.")


class HangAdapter(ActionAdapter):
    """HANG: blocks for ``seconds``, deaf to stop requests and deadlines (a wedged client library)."""

    action_type = "HANG"
    supports_real = True

    def validate(self, payload: dict[str, Any]) -> None:
        _number(payload, "seconds", required=True)

    def execute_proof(self, action, *, attempt: Attempt) -> ActionResult:
        time.sleep(action.payload["seconds"])
        ref, content = _artifact(action, self)
        stored = artifact_put(name=ref, content=content)
        return ActionResult.with_artifact(f"hung for {action.payload['seconds']}s", stored)

    def execute_real(self, action, *, attempt: Attempt) -> ActionResult:
        time.sleep(action.payload["seconds"])
        return ActionResult(message=f"REAL: hung for {action.payload['seconds']}s")


class HangRealNonIdempotentAdapter(HangAdapter):
    """HANG_REAL: like HANG, but declares that running it twice would act twice."""

    action_type = "HANG_REAL"
    is_idempotent = False


class CrashAdapter(ActionAdapter):
    """CRASH: kills its own process (``os._exit``), like a segfaulting extension or the OOM killer.

    Payload: ``until_attempt`` (crash on attempts up to this number; default: every attempt) and
    ``after_artifact`` (write the PROOF artifact before crashing, as a crash between the effect
    and the recording of success would).
    """

    action_type = "CRASH"
    supports_real = True

    def validate(self, payload: dict[str, Any]) -> None:
        _number(payload, "until_attempt", required=False)
        unknown = set(payload) - {"until_attempt", "after_artifact"}
        if unknown:
            raise InvalidPayload(f"unknown field(s) {sorted(unknown)}.")

    def _run(self, action, attempt: Attempt, *, write: bool) -> ActionResult:
        ref, content = _artifact(action, self)
        if write and action.payload.get("after_artifact"):
            artifact_put(name=ref, content=content)  # the database store writes nothing before the SUCCESS
        until = action.payload.get("until_attempt")
        if until is None or attempt.number <= until:
            os._exit(CRASH_EXIT_CODE)
        if not write:
            return ActionResult(message=f"REAL: survived attempt {attempt.number}")
        stored = artifact_put(name=ref, content=content)
        found = "; artifact found and verified" if stored.already_there else ""
        return ActionResult.with_artifact(f"PROOF: survived attempt {attempt.number}{found}", stored)

    def execute_proof(self, action, *, attempt: Attempt) -> ActionResult:
        return self._run(action, attempt, write=True)

    def execute_real(self, action, *, attempt: Attempt) -> ActionResult:
        return self._run(action, attempt, write=False)


class CrashRealNonIdempotentAdapter(CrashAdapter):
    """CRASH_REAL: like CRASH, but declares that running it twice would act twice."""

    action_type = "CRASH_REAL"
    is_idempotent = False


class SucceedsAdapter(ActionAdapter):
    action_type = "TEST_OK"
    description = "always succeeds"

    def execute_proof(self, action, *, attempt):
        return ActionResult(message="ok")


class RaisesTransientAdapter(ActionAdapter):
    action_type = "TEST_TRANSIENT"
    description = "raises an unexpected error (retried)"

    def execute_proof(self, action, *, attempt):
        raise ConnectionError("upstream timed out")


class RaisesPermanentAdapter(ActionAdapter):
    action_type = "TEST_PERMANENT"
    description = "raises a permanent error (dead-lettered at once)"

    def execute_proof(self, action, *, attempt):
        raise PermanentAdapterError("account suspended")


class SlowAdapter(ActionAdapter):
    action_type = "TEST_SLOW"
    description = "takes payload['seconds'] to finish"

    def execute_proof(self, action, *, attempt):
        time.sleep(action.payload.get("seconds", 0.2))
        return ActionResult(message="slow but done")


#: In-process fakes, put into the registry by tests/daemon/test_loop.py with monkeypatch.
ALL = [SucceedsAdapter(), RaisesTransientAdapter(), RaisesPermanentAdapter(), SlowAdapter()]


# --- Flow control (docs/flow-control.md) -----------------------------------------------------------------

#: Replaces the shipped POST_SOCIAL with one that can run for REAL (see RealPostSocialAdapter).
FLOW_ADAPTERS = ["tests.fake_adapters.RealPostSocialAdapter"]
SENT_LOG = "sent.log"


class RealPostSocialAdapter(PostSocialAdapter):
    """POST_SOCIAL with a REAL integration that "posts" by appending one line to ``sent.log`` in the
    artifacts directory: ``<idempotency key> <sha256 of the PROOF content it rendered> <message>``.

    The shipped POST_SOCIAL refuses REAL for a payload without a connected account, so tests of the approval gate
    register this one under the same action type (AOL_EXTRA_ADAPTERS overrides the built-in)."""

    supports_real = True

    def real_problem(self) -> str:
        return ""

    def supports_real_for(self, payload) -> bool:
        return True

    def execute_real(self, action, *, attempt: Attempt) -> ActionResult:
        attempt.checkpoint()
        rendered = sha256_bytes(self.proof_render(action).content)
        log = aol.artifacts_dir / SENT_LOG
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            handle.write(f"{action.idempotency_key} {rendered} {action.payload['message']}\n")
        return ActionResult(message=f"REAL: posted to {action.payload['platform']}")


def sent_lines(artifacts_dir) -> list[list[str]]:
    """What RealPostSocialAdapter "posted": [key, sha256, message] per line."""
    path = artifacts_dir / SENT_LOG
    return [line.split(" ", 2) for line in path.read_text().splitlines()] if path.exists() else []
