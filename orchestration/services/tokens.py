"""API tokens: the planner's credentials for the HTTP API and the MCP server.

A token's secret (``aol_`` + 43 URL-safe characters, 256 random bits) is shown once, when it is
created; the database keeps its SHA-256 and a short prefix to recognise it by. A salted slow hash
would add nothing: the secret is random, not a password a person chose.

Scopes (``TokenScope``) can read, propose, cancel and stop. No scope can approve, reject, switch
to REAL, resume, revive or edit rate limits; the API and MCP layers have no route that does.
"""

import hashlib
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When

from orchestration.conf import aol
from orchestration.dbclock import db_now
from orchestration.exceptions import InvalidToken, TokenRateLimited, TokenRefused, TokenScopeMissing
from orchestration.models import ApiToken, AuditOutcome, TokenScope
from orchestration.services.audit import audit_write
from orchestration.services.control import operator_reason_clean

logger = logging.getLogger("orchestration")

SECRET_PREFIX = "aol_"
#: Characters of the secret kept in clear to recognise a token by (``aol_`` and 8 more).
SHOWN_PREFIX_LENGTH = 12
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: ``last_used_at`` is written at most this often per token, so reads stay reads.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def secret_sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_scopes_clean(*, scopes: Any) -> list[str]:
    """``scopes`` (a list, or a comma-separated string) as a sorted list of known scopes; InvalidToken if not."""
    if isinstance(scopes, str):
        scopes = [part.strip() for part in scopes.split(",") if part.strip()]
    if not isinstance(scopes, (list, tuple)) or not all(isinstance(scope, str) for scope in scopes):
        raise InvalidToken(f"Scopes must be a list of names, got {scopes!r}.")
    unknown = sorted(set(scopes) - set(TokenScope.values))
    if unknown:
        raise InvalidToken(
            f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(TokenScope.values)}. "
            "No scope can approve, switch to REAL, resume or revive: those stay with people."
        )
    if not scopes:
        raise InvalidToken(f"Give at least one scope ({', '.join(TokenScope.values)}).")
    return sorted(set(scopes), key=TokenScope.values.index)


def token_name_clean(*, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidToken(
            f"Token name {name!r} is not valid: 1 to 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def token_create(
    *, name: str, scopes: Any, actor: str, reason: str = "", expires_in: timedelta | None = None
) -> tuple[ApiToken, str]:
    """Create a token; returns it and its secret, which is not stored and cannot be shown again.

    Raises InvalidToken (bad name or scopes, a name in use, a non-positive lifetime); nothing is written then.
    """
    name = token_name_clean(name=name)
    scopes = token_scopes_clean(scopes=scopes)
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidToken(f"The token's lifetime must be positive, got {expires_in}.")
    reason = reason.strip() or "created"
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        prefix=secret[:SHOWN_PREFIX_LENGTH],
        secret_sha256=secret_sha256(secret),
        scopes=scopes,
        created_by=actor[:255],
    )
    try:
        with transaction.atomic():
            if expires_in is not None:
                token.expires_at = db_now() + expires_in
            token.save(force_insert=True)
            audit_write(
                actor=actor,
                verb="create API token",
                outcome=AuditOutcome.DONE,
                reason=reason,
                target=f"API token {name}",
                after={
                    "scopes": scopes,
                    "prefix": token.prefix,
                    **({"expires_at": token.expires_at.isoformat()} if token.expires_at else {}),
                },
            )
    except IntegrityError:
        raise InvalidToken(f"A token named {name!r} exists already; revoke it or choose another name.") from None
    logger.info("API token created name=%s scopes=%s by=%s", name, ",".join(scopes), actor)
    return token, secret


def token_revoke(*, name: str, actor: str, reason: str) -> tuple[ApiToken, bool]:
    """Revoke the token ``name`` (refused from now on); ``(token, changed)``. InvalidToken if there is none."""
    reason = operator_reason_clean(reason=reason, actor=actor, verb="revoke an API token")
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().filter(name=name).first()
        if token is None:
            raise InvalidToken(f"There is no API token named {name!r}.")
        changed = token.revoked_at is None
        if changed:
            token.revoked_at = db_now()
            token.revoked_by = actor[:255]
            token.save(update_fields=["revoked_at", "revoked_by"])
        audit_write(
            actor=actor,
            verb="revoke API token",
            outcome=AuditOutcome.DONE if changed else AuditOutcome.NO_CHANGE,
            reason=reason,
            target=f"API token {name}",
            after={"revoked_at": token.revoked_at.isoformat() if token.revoked_at else None},
        )
    logger.info("API token revoked name=%s by=%s changed=%s", name, actor, changed)
    return token, changed


def token_authenticate(*, secret: str) -> ApiToken:
    """The live token whose secret this is; TokenRefused (saying why, never echoing the secret) if none."""
    if not secret or not secret.startswith(SECRET_PREFIX):
        raise TokenRefused("Send a valid API token: Authorization: Bearer aol_…")
    token = ApiToken.objects.filter(secret_sha256=secret_sha256(secret)).first()
    if token is None:
        raise TokenRefused("This API token is not known.")
    now = db_now()
    if token.revoked_at is not None:
        raise TokenRefused(f"The API token {token.name!r} was revoked.")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenRefused(f"The API token {token.name!r} expired at {token.expires_at.isoformat()}.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_require_scope(*, token: ApiToken, scope: str) -> None:
    """Nothing if ``token`` has ``scope``; TokenScopeMissing otherwise."""
    scope = str(scope)  # a TokenScope member's repr would name the enum, not the scope
    if scope not in token.scopes:
        raise TokenScopeMissing(
            f"The API token {token.name!r} lacks the {scope!r} scope (it has: {', '.join(token.scopes) or 'none'}).",
            scope=scope,
        )


def token_write_admit(*, token: ApiToken) -> None:
    """Count one write of ``token``; TokenRateLimited (with the seconds to wait) beyond AOL_API_WRITES_PER_MINUTE.

    A fixed window per minute of the database's clock, counted on the token's own row, so every web
    worker process (and host) counts against one number: the UPDATE takes the row's lock on
    PostgreSQL and SQLite's IMMEDIATE transaction serialises writers, so two requests can never
    read the same count. A refused request counts too. At most twice the limit can pass around
    a minute's boundary, the price of one row and no history.
    """
    limit = aol.api_writes_per_minute
    if not limit:
        return
    with transaction.atomic():
        now = db_now()
        minute = int(now.timestamp()) // 60
        ApiToken.objects.filter(pk=token.pk).update(
            write_count=Case(When(write_window=minute, then=F("write_count") + 1), default=Value(1)),
            write_window=minute,
        )
        count = ApiToken.objects.filter(pk=token.pk).values_list("write_count", flat=True).get()
    if count > limit:
        retry_after = max(1, 60 - int(now.timestamp()) % 60)
        raise TokenRateLimited(
            f"The API token {token.name!r} made more than {limit} write requests this minute "
            f"(AOL_API_WRITES_PER_MINUTE); try again in {retry_after} s.",
            retry_after_seconds=retry_after,
        )
