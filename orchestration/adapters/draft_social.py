"""DRAFT_SOCIAL: have the LLM draft a social post from a brief (PROOF: store the draft as an artifact).

Needs the optional LLM. Disabled, the action fails permanently with the message of
``llm.runtime.require_llm`` (how to enable it) and the daemon goes on with the next action. A
server error or a hang is bounded by AICMO_LLM_TIMEOUT_SECONDS × (AICMO_LLM_MAX_RETRIES + 1) and is
a transient failure: the queue retries it with backoff.
"""

from typing import TYPE_CHECKING, Any

from orchestration.adapters.artifacts import proof_artifact_ref
from orchestration.adapters.base import ActionAdapter, ActionResult, Attempt, require_fields
from orchestration.adapters.post_social import PLATFORM_MAX_CHARS
from orchestration.adapters.store import artifact_earlier_content, artifact_put
from orchestration.exceptions import InvalidPayload, LLMUnconfigured, PermanentAdapterError, TransientAdapterError

if TYPE_CHECKING:
    from orchestration.models import Action

MAX_BRIEF_CHARS = 2000
MAX_TONE_CHARS = 100
SYSTEM_PROMPT = (
    "You write social media posts for a marketing team. Reply with the text of one post only: no preamble, "
    "no surrounding quotes, no explanation."
)


class DraftSocialAdapter(ActionAdapter):
    action_type = "DRAFT_SOCIAL"
    description = (
        'Draft a social post with the LLM from a brief. Payload: {"platform": "linkedin", "brief": "…", '
        '"tone": "friendly"} (tone optional).'
    )
    # Re-running after a crash reuses the stored draft instead of asking the LLM again.
    is_idempotent = True
    real_setup_hint = (
        "drafts are only stored in PROOF mode and nothing publishes them yet; keep PROOF mode on "
        "(AOL_PROOF_MODE=1, run_aol_daemon --proof, or the proof_mode flag)."
    )

    def validate(self, payload: dict[str, Any]) -> None:
        require_fields(payload, required={"platform": str, "brief": str}, optional={"tone": str, "account": str})
        platform = payload["platform"].strip().lower()
        if platform not in PLATFORM_MAX_CHARS:
            known = ", ".join(sorted(PLATFORM_MAX_CHARS))
            raise InvalidPayload(f"'platform' {payload['platform']!r} is not supported (known: {known}).")
        if len(payload["brief"]) > MAX_BRIEF_CHARS:
            raise InvalidPayload(f"'brief' is {len(payload['brief'])} characters; the limit is {MAX_BRIEF_CHARS}.")
        if len(payload.get("tone") or "") > MAX_TONE_CHARS:
            raise InvalidPayload(f"'tone' is longer than {MAX_TONE_CHARS} characters.")

    def execute_proof(self, action: "Action", *, attempt: Attempt) -> ActionResult:
        from llm.client import llm_client_get
        from llm.exceptions import LLMCallFailed, LLMDisabled

        payload = action.payload
        platform = payload["platform"].strip().lower()
        ref = proof_artifact_ref(action=action, folder="draft_social")
        earlier = artifact_earlier_content(name=ref)
        if earlier is not None:
            # An earlier attempt stored the draft as a file (complete files only are linked into place)
            # and stopped before recording success: keep that draft rather than pay for another.
            return ActionResult.with_artifact(
                f"PROOF: draft for {platform} already stored by an earlier attempt",
                artifact_put(name=ref, content=earlier),
            )
        try:
            client = llm_client_get()
        except LLMDisabled as exc:
            raise LLMUnconfigured(str(exc)) from None
        limit = PLATFORM_MAX_CHARS[platform]
        prompt = (
            f"Platform: {platform} (the post must be at most {limit} characters)\n"
            f"Tone: {payload.get('tone') or 'professional and friendly'}\n"
            f"Brief: {payload['brief']}"
        )
        try:
            draft = client.complete(system=SYSTEM_PROMPT, prompt=prompt, max_tokens=min(1000, limit // 2 + 50))
        except LLMCallFailed as exc:
            raise (TransientAdapterError if exc.transient else PermanentAdapterError)(str(exc)) from None
        trimmed = len(draft) > limit
        if trimmed:
            draft = draft[: limit - 1].rstrip() + "…"
        content = (
            "AICMO PROOF artifact: a draft, nothing was posted.\n"
            f"action_id: {action.pk}\n"
            f"action_type: {self.action_type}\n"
            f"idempotency_key: {action.idempotency_key}\n"
            f"created_at: {action.created_at.isoformat()}\n"
            f"platform: {platform}\n"
            f"account: {payload.get('account') or '-'}\n"
            f"model: {client.model}\n"
            f"trimmed_to_limit: {'yes' if trimmed else 'no'}\n"
            "--- brief ---\n"
            f"{payload['brief']}\n"
            "--- draft ---\n"
            f"{draft}\n"
        ).encode()
        return ActionResult.with_artifact(
            f"PROOF: drafted {len(draft)} characters for {platform} with {client.model}"
            + (" (trimmed to the platform limit)" if trimmed else ""),
            artifact_put(name=ref, content=content),
        )
