"""Fake adapters, one per failure mode, registered only inside the tests that use them."""

import time

from orchestration.adapters.base import ActionAdapter, ActionResult
from orchestration.exceptions import PermanentAdapterError


class SucceedsAdapter(ActionAdapter):
    action_type = "TEST_OK"
    description = "always succeeds"

    def execute_proof(self, action):
        return ActionResult(message="ok")


class RaisesTransientAdapter(ActionAdapter):
    action_type = "TEST_TRANSIENT"
    description = "raises an unexpected error (retried)"

    def execute_proof(self, action):
        raise ConnectionError("upstream timed out")


class RaisesPermanentAdapter(ActionAdapter):
    action_type = "TEST_PERMANENT"
    description = "raises a permanent error (dead-lettered at once)"

    def execute_proof(self, action):
        raise PermanentAdapterError("account suspended")


class SlowAdapter(ActionAdapter):
    action_type = "TEST_SLOW"
    description = "takes payload['seconds'] to finish"

    def execute_proof(self, action):
        time.sleep(action.payload.get("seconds", 0.2))
        return ActionResult(message="slow but done")


ALL = [SucceedsAdapter(), RaisesTransientAdapter(), RaisesPermanentAdapter(), SlowAdapter()]
