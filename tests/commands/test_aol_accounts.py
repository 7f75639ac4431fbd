"""``manage.py aol_accounts``: credentials from standard input or a file, never printed; list, remove, rotate-keys."""

import io
import subprocess
import sys
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from orchestration.credentials import account_credentials
from orchestration.models import Account
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db

TOKEN = "cli-token-CANARY-9020"
KEY = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def keys(settings):
    settings.AOL_CREDENTIALS_KEYS = [KEY]
    return settings


def run(*args: str, stdin: str = "") -> str:
    out = StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command("aol_accounts", *args, stdout=out)
    finally:
        sys.stdin = old
    return out.getvalue()


def test_aol_accounts__add_from_stdin_list_and_remove_never_print_the_credentials():
    out = run(
        "add", "brand-main", "--platform", "mastodon", "--base-url", "https://social.example",
        stdin=f'{{"access_token": "{TOKEN}"}}',
    )  # fmt: skip
    assert "Account brand-main (mastodon) added; its credentials (access_token) are stored encrypted." in out
    assert account_credentials(account=Account.objects.get()) == {"access_token": TOKEN}
    listed = run("list")
    assert "brand-main  mastodon  https://social.example  encrypted: access_token" in listed
    assert "1 account." in listed
    assert TOKEN not in out + listed
    assert "removed" in run("remove", "brand-main", "--reason", "retired")
    assert not Account.objects.exists()
    assert "No connected accounts." in run("list")


def test_aol_accounts__add_from_a_file(tmp_path):
    path = tmp_path / "creds.json"
    path.write_text(f'{{"handle": "brand.example", "app_password": "{TOKEN}"}}')
    run("add", "brand-sky", "--platform", "bluesky", "--credentials-file", str(path))
    assert Account.objects.get().credential_fields == ["app_password", "handle"]


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        (["add", "brand-main", "--platform", "mastodon", "--base-url", "https://s.example"], "", "No credentials"),
        (["add", "brand-main", "--platform", "mastodon", "--base-url", "https://s.example"], "{", "not JSON"),
        (["add", "brand-main", "--platform", "mastodon"], '{"access_token": "t"}', "needs its instance's base URL"),
        (["remove", "nobody", "--reason", "x"], "", "No account named 'nobody'"),
    ],
)
def test_aol_accounts__bad_input_exits_2_with_the_problem_and_writes_nothing(args, stdin, error):
    with pytest.raises(CommandError) as raised:
        run(*args, stdin=stdin)
    assert raised.value.returncode == 2 and error in str(raised.value)
    assert not Account.objects.exists()


def test_aol_accounts__rotate_keys_re_encrypts_with_the_first_key(keys):
    run("add", "brand-x", "--platform", "x", stdin=f'{{"bearer_token": "{TOKEN}"}}')
    new = Fernet.generate_key().decode()
    keys.AOL_CREDENTIALS_KEYS = [new, KEY]
    assert "1 account re-encrypted" in run("rotate-keys")
    keys.AOL_CREDENTIALS_KEYS = [new]
    assert account_credentials(account=Account.objects.get()) == {"bearer_token": TOKEN}


def test_aol_accounts__without_keys_says_how_to_make_one(keys):
    keys.AOL_CREDENTIALS_KEYS = []
    with pytest.raises(CommandError) as raised:
        run("add", "brand-x", "--platform", "x", stdin='{"bearer_token": "t"}')
    assert "AOL_CREDENTIALS_KEYS is not set" in str(raised.value) and "Fernet.generate_key()" in str(raised.value)


def test_check__a_malformed_key_is_an_error_that_never_shows_the_key(daemon_env):
    env = {**daemon_env, "AOL_CREDENTIALS_KEYS": f"{KEY},not-a-key-CANARY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "orchestration.E095" in result.stderr and "key #2 is not a Fernet key" in result.stderr
    assert "not-a-key-CANARY" not in result.stdout + result.stderr and KEY not in result.stdout + result.stderr
