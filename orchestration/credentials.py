"""Connected accounts' credentials at rest: MultiFernet over AOL_CREDENTIALS_KEYS.

The first key encrypts, every key decrypts, so a key is rotated by putting a new one first, running
``aol_accounts rotate-keys`` (services/accounts.py), then dropping the old one. This module only
encrypts and decrypts: services/accounts.py writes accounts, and the adapter that acts as an
account decrypts its credentials with ``account_credentials``. Nothing here logs a value.
"""

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from orchestration.conf import aol
from orchestration.exceptions import CredentialsUnavailable
from orchestration.models import Account

KEYS_HINT = (
    "set AOL_CREDENTIALS_KEYS to one or more Fernet keys, comma-separated (make one with: python -c "
    '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")'
)


def credentials_keys_problems() -> list[str]:
    """What is wrong with AOL_CREDENTIALS_KEYS (for the system check E095); never shows a key."""
    keys: object = aol.credentials_keys
    if not keys:
        return []
    if isinstance(keys, str) or not isinstance(keys, list | tuple) or not all(isinstance(key, str) for key in keys):
        return ["AOL_CREDENTIALS_KEYS must be a list of Fernet keys."]
    problems = []
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            problems.append(
                f"AOL_CREDENTIALS_KEYS: key #{number} is not a Fernet key (32 bytes, URL-safe base64, 44 characters)."
            )
    return problems


def credentials_fernet() -> MultiFernet:
    """The keys of AOL_CREDENTIALS_KEYS; CredentialsUnavailable (naming no key) when none or one is malformed."""
    problems = credentials_keys_problems()
    if problems:
        raise CredentialsUnavailable(f"{problems[0]} Fix it: {KEYS_HINT}.")
    if not aol.credentials_keys:
        raise CredentialsUnavailable(
            f"AOL_CREDENTIALS_KEYS is not set, so credentials cannot be stored or read; {KEYS_HINT}."
        )
    return MultiFernet([Fernet(key) for key in aol.credentials_keys])


def credentials_encrypt(credentials: dict[str, str]) -> str:
    return credentials_fernet().encrypt(json.dumps(credentials, sort_keys=True).encode()).decode()


def account_credentials(*, account: Account) -> dict[str, str]:
    """Decrypt ``account``'s credentials (for the adapter acting as it); CredentialsUnavailable if no key fits."""
    try:
        data: dict[str, str] = json.loads(credentials_fernet().decrypt(account.credentials_encrypted.encode()))
    except InvalidToken:
        raise CredentialsUnavailable(
            f"The credentials of account {account.name!r} cannot be decrypted with any key in AOL_CREDENTIALS_KEYS: "
            "the key that encrypted them was removed, or the row was altered. Put the old key back (after the new "
            "one), or set the credentials again."
        ) from None
    return data
