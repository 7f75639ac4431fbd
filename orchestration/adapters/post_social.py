"""POST_SOCIAL: publish a message on a social network (PROOF: write what would be posted).

A payload that names a connected account (``"account": "brand-main"``, see ``aol_accounts``) of a
network with a REAL integration (adapters/platforms/) renders, in PROOF, the exact request REAL
mode sends, so an approval binds those bytes; REAL sends it as that account. Without an account,
or for a network with no integration, PROOF writes the message as text and REAL is refused.
"""

from typing import TYPE_CHECKING, Any

from orchestration.adapters.artifacts import proof_artifact_ref
from orchestration.adapters.base import ActionAdapter, ActionResult, Attempt, ProofRender, require_fields
from orchestration.adapters.platforms import PLATFORMS, Platform, PostSpec, Published, TextCount, platform_get
from orchestration.adapters.store import artifact_put
from orchestration.credentials import account_credentials
from orchestration.exceptions import (
    CredentialsUnavailable,
    InvalidPayload,
    OutcomeUnknown,
    PermanentAdapterError,
    RealRunUnconfigured,
)

if TYPE_CHECKING:
    from orchestration.models import Account, Action

#: Platforms we know and the longest message each accepts, in characters (a platform with a REAL
#: integration counts with its own rules instead: Platform.text_count).
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
REAL_HINT = (
    "name a connected account of a network with a REAL integration in the payload "
    '("account": "<name>", see python manage.py aol_accounts), or keep PROOF mode on '
    "(AOL_PROOF_MODE=1, run_aol_daemon --proof, or the proof_mode flag)."
)


def _platform_name(payload: dict[str, Any]) -> str:
    name = str(payload["platform"]).strip().lower()
    return "x" if name == "twitter" else name


def post_text_count(payload: dict[str, Any]) -> TextCount | None:
    """The message's length as its network counts it, and the network's limit (None: not a post we know).

    With a REAL integration the platform's own rules count (Platform.text_count: links, graphemes, …);
    else Python's characters against PLATFORM_MAX_CHARS, as ``validate`` checks.
    """
    message, raw = payload.get("message"), str(payload.get("platform", "")).strip().lower()
    if not isinstance(message, str) or raw not in PLATFORM_MAX_CHARS:
        return None
    platform = platform_get(_platform_name(payload))
    if platform is not None:
        return platform.text_count(message)
    return TextCount(count=len(message), limit=PLATFORM_MAX_CHARS[raw])


class PostSocialAdapter(ActionAdapter):
    action_type = "POST_SOCIAL"
    description = (
        'Post a message to a social network. Payload: {"platform": "mastodon", "account": "brand-main", '
        '"message": "…"} (account: a connected account; needed for REAL)'
    )
    #: A rate limit per account: {"action_type": "POST_SOCIAL", "key_fields": ["platform", "account"], …}
    rate_key_fields = ("platform", "account")
    supports_real = True
    real_setup_hint = REAL_HINT

    def validate(self, payload: dict[str, Any]) -> None:
        require_fields(payload, required={"platform": str, "message": str}, optional={"account": str})
        raw = payload["platform"].strip().lower()
        if raw not in PLATFORM_MAX_CHARS:
            known = ", ".join(sorted(PLATFORM_MAX_CHARS))
            raise InvalidPayload(f"'platform' {payload['platform']!r} is not supported (known: {known}).")
        platform = platform_get(_platform_name(payload))
        if platform is not None:
            problems = platform.text_problems(payload["message"])
            if problems:
                raise InvalidPayload("; ".join(problems) + ".")
        else:
            limit = PLATFORM_MAX_CHARS[raw]
            if len(payload["message"]) > limit:
                raise InvalidPayload(
                    f"'message' is {len(payload['message'])} characters; {raw} allows at most {limit}."
                )
        account = payload.get("account")
        if account is not None and platform is not None:
            found = _account_find(account)
            if found is None:
                raise InvalidPayload(f"'account' {account!r}: no connected account has that name (aol_accounts list).")
            if found.platform != platform.name:
                raise InvalidPayload(f"'account' {account!r} is a {found.platform} account, not a {platform.name} one.")

    def idempotent_for(self, payload: dict[str, Any]) -> bool:
        """A post that cannot run REAL (no account, or a network without an integration) has no effect
        to repeat; otherwise the platform decides (Mastodon and Bluesky are, X and LinkedIn are not)."""
        if "platform" not in payload or not self.supports_real_for(payload):
            return True
        platform = platform_get(_platform_name(payload))
        return platform is None or platform.is_idempotent

    def supports_real_for(self, payload: dict[str, Any]) -> bool:
        return bool(payload.get("account")) and platform_get(_platform_name(payload)) is not None

    def exclusive_key(self, payload: dict[str, Any]) -> str | None:
        account = payload.get("account")
        return f"account:{account}" if account else None

    def real_problem(self) -> str:
        return "" if PLATFORMS else REAL_HINT

    def _target(self, action: "Action") -> tuple[Platform, "Account"] | None:
        """The network and account a REAL run posts as, or None when the payload names no such pair."""
        platform = platform_get(_platform_name(action.payload))
        name = action.payload.get("account")
        if platform is None or not name:
            return None
        account = _account_find(name)
        if account is None:
            raise PermanentAdapterError(
                f"connected account {name!r} no longer exists; add it back (aol_accounts add) or discard the action"
            )
        return platform, account

    @staticmethod
    def _spec(action: "Action") -> PostSpec:
        return PostSpec(
            text=action.payload["message"],
            idempotency_key=action.idempotency_key,
            created_at=action.created_at,
            action_id=action.pk,
        )

    def proof_render(self, action: "Action") -> ProofRender:
        # The content depends only on the action (and its account's base URL), so a re-run after a
        # crash writes the same bytes to the same name (artifact_put leaves the first copy in place),
        # and the approval gate can re-render it to check that what goes out is what a person approved.
        target = self._target(action)
        if target is not None:
            platform, account = target
            request = platform.build_request(account=account, spec=self._spec(action))
            ref = proof_artifact_ref(action=action, folder="post_social", suffix=".http")
            return ProofRender(ref=ref, content=request.render())
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
            f"PROOF: would post {len(payload['message'])} characters to {payload['platform']}"
            + (f" as {payload['account']}" if payload.get("account") else ""),
            artifact_put(name=render.ref, content=render.content),
        )

    def execute_real(self, action: "Action", *, attempt: Attempt) -> ActionResult:
        target = self._target(action)
        if target is None:
            raise RealRunUnconfigured(f"{self.action_type} cannot run in REAL mode for this payload: {REAL_HINT}")
        platform, account = target
        try:
            credentials = account_credentials(account=account)
        except CredentialsUnavailable as exc:
            raise RealRunUnconfigured(str(exc)) from None
        spec = self._spec(action)
        request = platform.build_request(account=account, spec=spec)
        attempt.checkpoint()  # asked to stop (or out of time) before sending: send nothing
        try:
            published = platform.publish(
                account=account, credentials=credentials, request=request, spec=spec, attempt=attempt
            )
        except OutcomeUnknown as exc:
            if platform.is_idempotent:
                raise  # the retry carries what lets the network recognise it
            found = platform.find_published(account=account, credentials=credentials, spec=spec, attempt=attempt)
            if found is None:
                raise OutcomeUnknown(
                    f"{exc}; no post with this text was found among {account.name}'s posts since the action was created"
                ) from None
            return _result(platform, account, found, note=" (found among its recent posts after an unknown outcome)")
        return _result(platform, account, published)


def _result(platform: Platform, account: "Account", published: Published, note: str = "") -> ActionResult:
    return ActionResult(
        message=f"REAL: posted to {platform.label} as {account.name}, id {published.remote_id}{note}",
        remote_id=published.remote_id,
        remote_url=published.remote_url,
    )


def _account_find(name: str) -> "Account | None":
    from orchestration.models import Account

    return Account.objects.filter(name=name).first()
