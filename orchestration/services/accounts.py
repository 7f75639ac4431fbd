"""Connected accounts: add, change, remove, rotate keys, renew tokens; the one reader and writer of credentials.

Credentials (a JSON object of strings, e.g. ``{"access_token": "…"}``) are encrypted at rest with
``cryptography``'s MultiFernet over AOL_CREDENTIALS_KEYS: the first key encrypts, every key
decrypts, so a key is rotated by putting a new one first, running ``aol_accounts rotate-keys``
(re-encrypts every row with it), then dropping the old one. Nothing here logs, audits or returns a
credential's value; orchestration/credentials.py encrypts, and decrypts for the adapter that acts as the account.
"""

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import InvalidToken
from django.db import IntegrityError, transaction

from orchestration.adapters.platforms import Identity, platform_get
from orchestration.credentials import account_credentials, credentials_encrypt, credentials_fernet
from orchestration.exceptions import AccountCheckFailed, AdapterError, CredentialsUnavailable, InvalidAccount
from orchestration.models import Account, AccountPlatform, AuditOutcome
from orchestration.services.audit import audit_write
from orchestration.services.control import operator_reason_clean

logger = logging.getLogger("orchestration")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
#: The largest credentials object accepted, as JSON.
MAX_CREDENTIALS_BYTES = 8 * 1024
#: Platforms that have no single public API host: their accounts need the instance's URL.
BASE_URL_REQUIRED = {AccountPlatform.MASTODON}
#: How long a network has to answer the who-am-I call of ``account_verify``, in seconds.
VERIFY_TIMEOUT_SECONDS = 15.0


def account_fields_clean(*, name: str, platform: str, base_url: str) -> tuple[str, str, str]:
    """The account's name, platform and base URL, checked; InvalidAccount naming every problem."""
    problems = []
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(
            f"name {name!r} must be 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        )
    if platform not in AccountPlatform.values:
        problems.append(f"platform {platform!r} is not one of {', '.join(AccountPlatform.values)}")
    base_url = (base_url or "").strip()
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            problems.append(f"base URL {base_url!r} must be an http or https URL without a query or fragment")
        elif parts.username or parts.password:
            problems.append("the base URL must not hold a user or password; they go in the credentials")
    elif platform in BASE_URL_REQUIRED:
        problems.append(f"a {platform} account needs its instance's base URL, e.g. https://mastodon.social")
    if problems:
        message = "; ".join(problems)
        raise InvalidAccount(message[0].upper() + message[1:] + ".")
    return name, platform, base_url.rstrip("/")


def credentials_clean(*, credentials: Any) -> dict[str, str]:
    """A non-empty JSON object of non-empty strings; InvalidAccount names what is wrong, never a value."""
    if isinstance(credentials, str | bytes):
        try:
            credentials = json.loads(credentials)
        except ValueError:
            raise InvalidAccount(
                'The credentials must be a JSON object, e.g. {"access_token": "…"}; this is not JSON.'
            ) from None
    if not isinstance(credentials, dict) or not credentials:
        raise InvalidAccount('The credentials must be a non-empty JSON object, e.g. {"access_token": "…"}.')
    bad = sorted(
        str(key)[:64]
        for key, value in credentials.items()
        if not isinstance(key, str) or not _FIELD.match(key) or not isinstance(value, str) or not value
    )
    if bad:
        raise InvalidAccount(
            f"Credential field(s) {', '.join(map(repr, bad))}: each name must be a word (letters, digits, '_') "
            "and each value a non-empty string."
        )
    if len(json.dumps(credentials)) > MAX_CREDENTIALS_BYTES:
        raise InvalidAccount(f"The credentials are larger than {MAX_CREDENTIALS_BYTES} bytes.")
    return credentials


def account_add(
    *, name: str, platform: str, base_url: str = "", credentials: Any, actor: str, reason: str = ""
) -> Account:
    """Add an account with its credentials encrypted; InvalidAccount or CredentialsUnavailable write nothing."""
    name, platform, base_url = account_fields_clean(name=name, platform=platform, base_url=base_url)
    credentials = credentials_clean(credentials=credentials)
    encrypted = credentials_encrypt(credentials)
    reason = reason.strip() or "added"
    account = Account(
        name=name,
        platform=platform,
        base_url=base_url,
        credentials_encrypted=encrypted,
        credential_fields=sorted(credentials),
        created_by=actor[:255],
        updated_by=actor[:255],
    )
    try:
        with transaction.atomic():
            account.save(force_insert=True)
            audit_write(
                actor=actor,
                verb="add account",
                outcome=AuditOutcome.DONE,
                target=f"account {name}",
                reason=reason,
                after={"platform": platform, "base_url": base_url, "credential_fields": sorted(credentials)},
            )
    except IntegrityError:
        raise InvalidAccount(
            f"An account named {name!r} already exists; remove it first or pick another name."
        ) from None
    logger.info("account added name=%s platform=%s actor=%s", name, platform, actor)
    return account


def account_change(
    *, name: str, actor: str, reason: str, base_url: str | None = None, credentials: Any = None
) -> Account:
    """Change an account's base URL and/or replace its credentials (None: keep); audited without values."""
    reason = operator_reason_clean(reason=reason, actor=actor, verb="change an account")
    with transaction.atomic():
        account = Account.objects.select_for_update().filter(name=name).first()
        if account is None:
            raise InvalidAccount(f"No account named {name!r}.")
        before = {"base_url": account.base_url, "credential_fields": account.credential_fields}
        if base_url is not None:
            _, _, account.base_url = account_fields_clean(name=name, platform=account.platform, base_url=base_url)
        if credentials is not None:
            cleaned = credentials_clean(credentials=credentials)
            account.credentials_encrypted = credentials_encrypt(cleaned)
            account.credential_fields = sorted(cleaned)
        account.updated_by = actor[:255]
        account.save()
        after = {"base_url": account.base_url, "credential_fields": account.credential_fields}
        if credentials is not None:
            after["credentials"] = "replaced"
        audit_write(
            actor=actor,
            verb="change account",
            outcome=AuditOutcome.DONE,
            target=f"account {name}",
            reason=reason,
            before=before,
            after=after,
        )
    logger.info("account changed name=%s actor=%s credentials_replaced=%s", name, actor, credentials is not None)
    return account


def account_remove(*, name: str, actor: str, reason: str) -> None:
    """Delete an account and its credentials; audited. InvalidAccount when there is none of that name."""
    reason = operator_reason_clean(reason=reason, actor=actor, verb="remove an account")
    with transaction.atomic():
        account = Account.objects.filter(name=name).first()
        if account is None:
            raise InvalidAccount(f"No account named {name!r}.")
        account.delete()
        audit_write(
            actor=actor,
            verb="remove account",
            outcome=AuditOutcome.DONE,
            target=f"account {name}",
            reason=reason,
            before={"platform": account.platform, "base_url": account.base_url},
        )
    logger.info("account removed name=%s actor=%s", name, actor)


def accounts_rotate_keys(*, actor: str) -> int:
    """Re-encrypt every account's credentials with the first key of AOL_CREDENTIALS_KEYS; returns how many."""
    fernet = credentials_fernet()
    count = 0
    with transaction.atomic():
        for account in Account.objects.select_for_update().order_by("pk"):
            try:
                account.credentials_encrypted = fernet.rotate(account.credentials_encrypted.encode()).decode()
            except InvalidToken:
                raise CredentialsUnavailable(
                    f"Account {account.name!r}: its credentials cannot be decrypted with any key in "
                    "AOL_CREDENTIALS_KEYS, so nothing was re-encrypted. Keep the old key in the list (after the new "
                    "one) until rotate-keys has run."
                ) from None
            account.save(update_fields=["credentials_encrypted"])
            count += 1
        audit_write(
            actor=actor,
            verb="rotate account keys",
            outcome=AuditOutcome.DONE,
            target="accounts",
            reason="re-encrypt with the first key",
            after={"accounts": count},
        )
    logger.info("account credentials re-encrypted count=%s actor=%s", count, actor)
    return count


def account_credentials_update(*, account: Account, changes: Mapping[str, str | None], actor: str, reason: str) -> None:
    """Set (a string) or drop (None) credential fields of ``account`` and re-encrypt; audited with field names only.

    Call it inside a transaction that holds the account's row (``account_credentials_renew`` does).
    """
    credentials = account_credentials(account=account)
    for field, value in changes.items():
        if value is None:
            credentials.pop(field, None)
        else:
            credentials[field] = value
    credentials = credentials_clean(credentials=credentials)
    before = {"credential_fields": account.credential_fields}
    account.credentials_encrypted = credentials_encrypt(credentials)
    account.credential_fields = sorted(credentials)
    account.updated_by = actor[:255]
    account.save(update_fields=["credentials_encrypted", "credential_fields", "updated_by", "updated_at"])
    audit_write(
        actor=actor,
        verb="update account credentials",
        outcome=AuditOutcome.DONE,
        target=f"account {account.name}",
        reason=reason,
        before=before,
        after={"credential_fields": account.credential_fields, "changed": sorted(changes)},
    )
    logger.info(
        "account credentials updated name=%s fields=%s actor=%s", account.name, ",".join(sorted(changes)), actor
    )


def account_credentials_renew(
    *,
    account: Account,
    used: Mapping[str, str],
    renew: Callable[[dict[str, str]], dict[str, str | None]],
    actor: str,
    reason: str,
) -> dict[str, str]:
    """Renew rotating credentials (an OAuth refresh) once, however many processes find them expired together.

    ``used`` are the credentials the caller has (and found expired); ``renew(stored)`` asks the network for
    new ones and returns the fields to change. Returns the credentials to use from now on. When the stored
    access or refresh token is no longer the one in ``used``, another caller renewed them already: the
    stored ones are returned and the network is not asked (a rotated refresh token works once).
    ``renew``'s error leaves everything as it was. InvalidAccount when the account was removed meanwhile.
    """
    # The row lock is held across the token request on purpose (unlike an adapter's call, see
    # services/claim.py): the refresh token works once, so a second refresher (the daemon and an
    # admin Verify at once) must wait here and then find the rotated tokens, not send the used one.
    # On PostgreSQL select_for_update() blocks it; on SQLite the IMMEDIATE transaction does. The
    # request has short timeouts (adapters/platforms/x.py).
    with transaction.atomic():
        locked = Account.objects.select_for_update().filter(pk=account.pk).first()
        if locked is None:
            raise InvalidAccount(f"Account {account.name!r} was removed meanwhile.")
        stored = account_credentials(account=locked)
        if any(stored.get(field) != used.get(field) for field in ("access_token", "refresh_token")):
            logger.info("account credentials already renewed name=%s actor=%s", account.name, actor)
        else:
            account_credentials_update(account=locked, changes=renew(stored), actor=actor, reason=reason)
            stored = account_credentials(account=locked)
    account.credentials_encrypted = locked.credentials_encrypted
    account.credential_fields = locked.credential_fields
    return stored


def account_verify(*, account: Account, timeout_seconds: float = VERIFY_TIMEOUT_SECONDS) -> Identity:
    """Ask the account's network who its credentials act as (its who-am-I call).

    It writes nothing, but for the network's own token refresh (X: an expired access token renewed
    with the stored refresh token, see ``account_credentials_renew``).

    AccountCheckFailed says what to fix: no REAL integration for the network yet, the keys cannot
    decrypt the credentials, or what the network answered (bad token, wrong URL, missing scope).
    Only a platform's own messages are shown; an unexpected error is named by its kind alone, as its
    text may quote the request. No message carries a credential.
    """
    platform = platform_get(account.platform)
    if platform is None:
        raise AccountCheckFailed(
            f"There is no REAL integration for {account.platform} yet, so account {account.name!r} cannot be "
            "verified (nor used in REAL mode)."
        )
    try:
        credentials = account_credentials(account=account)
    except CredentialsUnavailable as exc:
        raise AccountCheckFailed(str(exc)) from None
    try:
        identity = platform.verify(account=account, credentials=credentials, timeout=timeout_seconds)
    except AccountCheckFailed:
        raise
    except NotImplementedError:
        raise AccountCheckFailed(f"The {platform.label} integration has no who-am-I check yet.") from None
    except AdapterError as exc:
        raise AccountCheckFailed(f"{platform.label}: {exc}") from None
    except Exception as exc:  # an SDK's own error
        logger.warning("account verify failed name=%s error=%s", account.name, type(exc).__name__)
        raise AccountCheckFailed(
            f"{platform.label} could not be asked who account {account.name!r} is ({type(exc).__name__}); check "
            f"its base URL ({platform.base_url(account) or 'none'}) and that the network is reachable."
        ) from None
    logger.info("account verified name=%s platform=%s handle=%s", account.name, account.platform, identity.handle)
    return identity


def identity_text(identity: Identity) -> str:
    """``acts as @brand (https://social.example/@brand)``: what a verification reports."""
    where = f" ({identity.url})" if identity.url else ""
    return f"acts as @{identity.handle.lstrip('@')}{where}"


def account_verify_by_name(*, name: str, timeout_seconds: float = VERIFY_TIMEOUT_SECONDS) -> Identity:
    """``account_verify`` of the account named ``name``; InvalidAccount when there is none."""
    account = Account.objects.filter(name=name).first()
    if account is None:
        raise InvalidAccount(f"No account named {name!r}.")
    return account_verify(account=account, timeout_seconds=timeout_seconds)
