"""The platform interface: what POST_SOCIAL needs from one social network in REAL mode.

One ``Platform`` subclass per network (mastodon.py, bluesky.py, x.py, linkedin.py), registered in
``platforms/__init__.py``. POST_SOCIAL (adapters/post_social.py) does the queue's part: it finds
the connected account the payload names, decrypts its credentials, renders the request for PROOF
and approval, and turns the platform's answer into an ``ActionResult``. A platform does the
network's part:

- ``text_count`` / ``text_problems``: the network's own text rules (how it counts length, links,
  mentions, hashtags), checked at enqueue;
- ``build_request``: the exact request REAL mode sends (method, URL, headers without secrets, body),
  from the action alone, so the PROOF artifact binds those bytes and an approval binds them too;
- ``publish``: send it once, handing the remote side what makes a retry safe where it has one
  (Mastodon's Idempotency-Key, Bluesky's record key); raise ``OutcomeUnknown`` when the request may
  have had its effect but no answer came, ``AccountRateLimited`` on 429 / rate-limit headers,
  ``PermanentAdapterError`` for what a retry cannot fix (401/403 with what to do);
- ``find_published``: for a network without idempotency (X, LinkedIn), look the post up among the
  account's recent posts after an unknown outcome;
- ``retract``: delete a published post; ``verify``: the who-am-I call behind ``aol_accounts verify``.

Nothing here logs or returns a credential; ``PlatformRequest.render`` shows the Authorization
header as a placeholder.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from orchestration.adapters.base import Attempt
    from orchestration.models import Account

#: How a rendered request shows the header that carries the account's secret.
AUTHORIZATION_PLACEHOLDER = "<the account's credentials, added at sending>"


@dataclass(frozen=True)
class PostSpec:
    """What to post, from the action alone (the same on every attempt)."""

    text: str
    idempotency_key: str
    created_at: datetime
    action_id: int | None = None


@dataclass(frozen=True)
class PlatformRequest:
    """One HTTP request as REAL mode sends it, but for the secret headers (added at sending)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    #: Names of headers added at sending with a secret value (shown as a placeholder).
    secret_headers: tuple[str, ...] = ("Authorization",)

    def render(self) -> bytes:
        """The PROOF artifact: request line, headers, the secret ones as placeholders, a blank line, the body."""
        lines = [f"{self.method} {self.url}", *(f"{name}: {value}" for name, value in self.headers)]
        lines.extend(f"{name}: {AUTHORIZATION_PLACEHOLDER}" for name in self.secret_headers)
        return ("\n".join(lines) + "\n\n").encode("utf-8") + self.body


@dataclass(frozen=True)
class Published:
    """What the network made: its id and where a person sees it."""

    remote_id: str
    remote_url: str


@dataclass(frozen=True)
class TextCount:
    """A text's length as the network counts it, and its limit."""

    count: int
    limit: int
    unit: str = "characters"

    @property
    def fits(self) -> bool:
        return self.count <= self.limit


@dataclass(frozen=True)
class Identity:
    """Who the credentials act as, from the network's who-am-I call."""

    handle: str
    remote_id: str = ""
    url: str = ""


class Platform:
    """One social network's REAL integration (see the module docstring)."""

    #: The payload's ``platform`` and the account's platform (AccountPlatform).
    name: ClassVar[str]
    label: ClassVar[str]
    max_chars: ClassVar[int]
    #: A retry after an unknown outcome cannot post twice (the network deduplicates for us).
    is_idempotent: ClassVar[bool] = True
    can_retract: ClassVar[bool] = True
    #: Credential fields an account of this network must have (services/accounts.py checks).
    credential_fields: ClassVar[tuple[str, ...]] = ("access_token",)
    #: The API's base URL when the account names none (empty: the account must name one).
    default_base_url: ClassVar[str] = ""

    def base_url(self, account: "Account") -> str:
        return (account.base_url or self.default_base_url).rstrip("/")

    def text_count(self, text: str) -> TextCount:
        return TextCount(count=len(text), limit=self.max_chars)

    def text_problems(self, text: str) -> list[str]:
        """What the network would refuse about ``text`` (empty: nothing)."""
        counted = self.text_count(text)
        if not counted.fits:
            return [f"'message' is {counted.count} {counted.unit}; {self.label} allows at most {counted.limit}"]
        return []

    def build_request(self, *, account: "Account", spec: PostSpec) -> PlatformRequest:
        raise NotImplementedError

    def publish(
        self,
        *,
        account: "Account",
        credentials: dict[str, str],
        request: PlatformRequest,
        spec: PostSpec,
        attempt: "Attempt",
    ) -> Published:
        raise NotImplementedError

    def find_published(
        self, *, account: "Account", credentials: dict[str, str], spec: PostSpec, attempt: "Attempt"
    ) -> Published | None:
        """The post ``spec`` made, found among the account's recent posts, or None (non-idempotent networks)."""
        return None

    def retract(self, *, account: "Account", credentials: dict[str, str], remote_id: str, timeout: float) -> None:
        raise NotImplementedError(f"{self.label} posts cannot be retracted by the AOL")

    def verify(self, *, account: "Account", credentials: dict[str, str], timeout: float) -> Identity:
        """Call the who-am-I endpoint; raise AccountCheckFailed saying what is wrong."""
        raise NotImplementedError
