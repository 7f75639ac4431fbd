"""POST_SOCIAL: publish a message on a social network (PROOF: write what would be posted)."""

from typing import TYPE_CHECKING, Any

from orchestration.adapters.artifacts import proof_artifact_ref
from orchestration.adapters.base import ActionAdapter, ActionResult, Attempt, ProofRender, require_fields
from orchestration.adapters.store import artifact_put
from orchestration.exceptions import InvalidPayload

if TYPE_CHECKING:
    from orchestration.models import Action

#: Platforms we know and the longest message each accepts, in characters.
PLATFORM_MAX_CHARS = {
    "twitter": 280,
    "x": 280,
    "bluesky": 300,
    "threads": 500,
    "mastodon": 500,
    "instagram": 2200,
    "linkedin": 3000,
    "facebook": 63206,
}


class PostSocialAdapter(ActionAdapter):
    action_type = "POST_SOCIAL"
    description = 'Post a message to a social network. Payload: {"platform": "twitter", "message": "…"}'
    #: A rate limit per account: {"action_type": "POST_SOCIAL", "key_fields": ["platform", "account"], …}
    rate_key_fields = ("platform", "account")
    real_setup_hint = (
        "no social network integration is configured (none ships yet); keep PROOF mode on "
        "(AOL_PROOF_MODE=1, run_aol_daemon --proof, or the proof_mode flag)."
    )

    def validate(self, payload: dict[str, Any]) -> None:
        require_fields(payload, required={"platform": str, "message": str}, optional={"account": str})
        platform = payload["platform"].strip().lower()
        if platform not in PLATFORM_MAX_CHARS:
            known = ", ".join(sorted(PLATFORM_MAX_CHARS))
            raise InvalidPayload(f"'platform' {payload['platform']!r} is not supported (known: {known}).")
        limit = PLATFORM_MAX_CHARS[platform]
        if len(payload["message"]) > limit:
            raise InvalidPayload(
                f"'message' is {len(payload['message'])} characters; {platform} allows at most {limit}."
            )

    def proof_render(self, action: "Action") -> ProofRender:
        # The content depends only on the action, so a re-run after a crash writes the same bytes
        # to the same name (artifact_put leaves the first copy in place), and the approval gate
        # can re-render it to check that what goes out is what a person approved.
        payload = action.payload
        content = (
            "AICMO PROOF artifact: nothing was posted.\n"
            f"action_id: {action.pk}\n"
            f"action_type: {self.action_type}\n"
            f"idempotency_key: {action.idempotency_key}\n"
            f"created_at: {action.created_at.isoformat()}\n"
            f"platform: {payload['platform'].strip().lower()}\n"
            f"account: {payload.get('account') or '-'}\n"
            "--- message ---\n"
            f"{payload['message']}\n"
        ).encode()
        return ProofRender(ref=proof_artifact_ref(action=action, folder="post_social"), content=content)

    def execute_proof(self, action: "Action", *, attempt: Attempt) -> ActionResult:
        payload = action.payload
        render = self.proof_render(action)
        return ActionResult.with_artifact(
            f"PROOF: would post {len(payload['message'])} characters to {payload['platform']}",
            artifact_put(name=render.ref, content=render.content),
        )
