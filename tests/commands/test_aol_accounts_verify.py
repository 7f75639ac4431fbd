"""``manage.py aol_accounts verify NAME``: whom the credentials act as, or what is wrong, from the network itself."""

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orchestration.adapters.platforms import PLATFORMS
from orchestration.models import AuditEntry
from orchestration.services.accounts import account_change
from tests.conftest import ROOT
from tests.platform_servers.local_network import CREDENTIALS_KEY, READ_ONLY_TOKEN, TOKEN, account_connect

MANAGE = str(ROOT / "tests" / "platform_servers" / "manage_local_network.py")


def verify(name: str = "brand-main") -> str:
    out = StringIO()
    call_command("aol_accounts", "verify", name, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_verify__ok_says_whom_the_account_acts_as(local_network):
    account_connect(local_network)
    assert verify() == f"ok: acts as @brand ({local_network.url}/@brand)\n"
    request = local_network.requests[-1]
    assert (request.method, request.path) == ("GET", "/api/v1/accounts/verify_credentials")
    assert request.authorization == f"Bearer {TOKEN}"
    assert not AuditEntry.objects.exclude(verb="add account").exists()  # a check writes nothing


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda server: server.tokens.clear(), "bad token: the network says the access token is invalid"),
        (lambda server: server.tokens.update({TOKEN: set()}), "missing scope: the token lacks read:accounts"),
        (
            lambda server: account_change(name="brand-main", actor="t", reason="r", base_url=server.url + "/nowhere"),
            "wrong URL: http://127.0.0.1:{port}/nowhere has no such API; check the base URL",
        ),
        (lambda server: server.stop(), "wrong URL? nobody answers at http://127.0.0.1:{port}"),
        (lambda server: server.script.append("echo"), "Local network could not be asked who account 'brand-main' is"),
    ],
)
def test_verify__says_what_is_wrong_with_exit_1_and_never_the_token(local_network, setup, words):
    account_connect(local_network)
    setup(local_network)
    with pytest.raises(CommandError) as failed:
        verify()
    message = str(failed.value)
    assert failed.value.returncode == 1
    assert message.startswith("brand-main: ") and words.format(port=local_network.port) in message, message
    assert TOKEN not in message


@pytest.mark.django_db
def test_verify__a_network_without_an_integration_says_so(local_network, monkeypatch):
    monkeypatch.delitem(PLATFORMS, "bluesky", raising=False)
    account_connect(local_network, name="blue", platform="bluesky")
    with pytest.raises(CommandError, match="blue: There is no REAL integration for bluesky yet"):
        verify("blue")


@pytest.mark.django_db
def test_verify__an_unknown_name_is_exit_2():
    with pytest.raises(CommandError, match="No account named 'ghost'") as failed:
        verify("ghost")
    assert failed.value.returncode == 2


@pytest.mark.django_db(transaction=True)
def test_verify__as_a_process_exit_0_then_1_and_no_credential_printed(local_network, daemon_env):
    account_connect(local_network)
    account_connect(local_network, name="reader", token=READ_ONLY_TOKEN)
    env = {**daemon_env, "AOL_CREDENTIALS_KEYS": CREDENTIALS_KEY}

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, MANAGE, "aol_accounts", "verify", name],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = run("brand-main")
    assert (ok.returncode, ok.stdout) == (0, f"ok: acts as @brand ({local_network.url}/@brand)\n"), ok.stderr
    local_network.tokens.pop(READ_ONLY_TOKEN)
    bad = run("reader")
    assert bad.returncode == 1 and "reader: bad token" in bad.stderr
    printed = ok.stdout + ok.stderr + bad.stdout + bad.stderr
    assert TOKEN not in printed and READ_ONLY_TOKEN not in printed
