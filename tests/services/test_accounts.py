"""Connected accounts: credentials encrypted at rest with MultiFernet, key rotation, bad input writes nothing."""

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from orchestration.credentials import account_credentials
from orchestration.exceptions import CredentialsUnavailable, InvalidAccount
from orchestration.models import Account, AuditEntry
from orchestration.services.accounts import (
    account_add,
    account_change,
    account_remove,
    accounts_rotate_keys,
)

pytestmark = pytest.mark.django_db

TOKEN = "mastodon-token-CANARY-4411"
OLD_KEY, NEW_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def keys(settings):
    settings.AOL_CREDENTIALS_KEYS = [OLD_KEY]
    return settings


def add(name: str = "brand-main", **changes) -> Account:
    fields = {
        "platform": "mastodon",
        "base_url": "https://social.example/",
        "credentials": {"access_token": TOKEN},
        "actor": "ops",
        **changes,
    }
    return account_add(name=name, **fields)


def stored_row(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM aol_accounts WHERE name = %s", [name])
        return repr(cursor.fetchone())


def test_account_add__credentials_are_encrypted_at_rest_and_read_back_by_the_service():
    account = add()
    assert TOKEN not in stored_row("brand-main")
    assert (account.base_url, account.credential_fields) == ("https://social.example", ["access_token"])
    assert account_credentials(account=Account.objects.get(name="brand-main")) == {"access_token": TOKEN}
    entry = AuditEntry.objects.get(verb="add account")
    assert entry.target == "account brand-main" and TOKEN not in repr(entry.after) + entry.reason


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"name": "Brand Main"}, "Name 'Brand Main' must be 1-64 lower-case letters"),
        ({"platform": "myspace"}, "platform 'myspace' is not one of mastodon, bluesky, x, linkedin"),
        ({"base_url": ""}, "a mastodon account needs its instance's base URL"),
        ({"base_url": "ftp://social.example"}, "must be an http or https URL"),
        ({"base_url": "https://me:pw@social.example"}, "must not hold a user or password"),
        ({"credentials": "not json"}, "this is not JSON"),
        ({"credentials": {}}, "must be a non-empty JSON object"),
        ({"credentials": {"access_token": ""}}, "Credential field(s) 'access_token'"),
    ],
)
def test_account_add__bad_input_is_refused_naming_it_and_writes_nothing(changes, error):
    name = changes.pop("name", "brand-main")
    with pytest.raises(InvalidAccount) as raised:
        add(name, **changes)
    assert error.lower() in str(raised.value).lower()
    assert not Account.objects.exists() and not AuditEntry.objects.exists()


def test_account_add__a_name_in_use_is_refused():
    add()
    with pytest.raises(InvalidAccount, match="already exists"):
        add()
    assert Account.objects.count() == 1


def test_account_add__without_keys_is_refused_and_writes_nothing(keys):
    keys.AOL_CREDENTIALS_KEYS = []
    with pytest.raises(CredentialsUnavailable, match="AOL_CREDENTIALS_KEYS is not set"):
        add()
    keys.AOL_CREDENTIALS_KEYS = ["not-a-fernet-key"]
    with pytest.raises(CredentialsUnavailable) as raised:
        add()
    assert "key #1 is not a Fernet key" in str(raised.value) and "not-a-fernet-key" not in str(raised.value)
    assert not Account.objects.exists()


def test_accounts_rotate_keys__new_key_first_rotate_then_the_old_key_can_go(keys):
    add("one")
    add("two", platform="bluesky", base_url="", credentials={"handle": "brand.example", "app_password": TOKEN})
    keys.AOL_CREDENTIALS_KEYS = [NEW_KEY, OLD_KEY]  # the new key first: it encrypts, both decrypt
    assert account_credentials(account=Account.objects.get(name="one")) == {"access_token": TOKEN}
    assert accounts_rotate_keys(actor="ops") == 2
    keys.AOL_CREDENTIALS_KEYS = [NEW_KEY]  # the old key is gone
    assert account_credentials(account=Account.objects.get(name="two"))["app_password"] == TOKEN
    keys.AOL_CREDENTIALS_KEYS = [OLD_KEY]  # only the old key: nothing can be read, and it says why
    with pytest.raises(CredentialsUnavailable, match="cannot be decrypted with any key"):
        account_credentials(account=Account.objects.get(name="one"))


def test_account_change_and_remove__replace_credentials_keep_them_or_delete_them_all_audited():
    add()
    account_change(name="brand-main", actor="ops", reason="new instance", base_url="https://other.example")
    account = Account.objects.get()
    assert account.base_url == "https://other.example"
    assert account_credentials(account=account) == {"access_token": TOKEN}  # kept
    account_change(name="brand-main", actor="ops", reason="token rotated", credentials={"access_token": "t2"})
    assert account_credentials(account=Account.objects.get()) == {"access_token": "t2"}
    with pytest.raises(InvalidAccount, match="No account named 'nope'"):
        account_remove(name="nope", actor="ops", reason="x")
    account_remove(name="brand-main", actor="ops", reason="brand retired")
    assert not Account.objects.exists()
    verbs = list(AuditEntry.objects.order_by("id").values_list("verb", flat=True))
    assert verbs == ["add account", "change account", "change account", "remove account"]
    assert not any(TOKEN in repr(row) or "t2'" in repr(row) for row in AuditEntry.objects.values())
