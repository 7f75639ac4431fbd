"""``manage.py aol_token``: create (the secret printed once), list (never a secret), revoke; bad input refused."""

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from orchestration.models import ApiToken, AuditEntry
from orchestration.services.tokens import secret_sha256, token_authenticate
from tests.conftest import ROOT


def run(*args: str) -> str:
    out = StringIO()
    call_command("aol_token", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_create__prints_the_secret_once_and_it_authenticates():
    out = run("create", "planner-prod", "--scopes", "read,propose", "--expires", "90d", "--reason", "go live")
    secret = out.strip().splitlines()[-1]
    token = ApiToken.objects.get(name="planner-prod")
    assert token_authenticate(secret=secret).pk == token.pk
    assert token.scopes == ["read", "propose"] and token.expires_at is not None
    assert "shown this once" in out
    entry = AuditEntry.objects.get(verb="create API token")
    assert entry.actor.startswith("cli:") and entry.reason == "go live"


@pytest.mark.django_db
def test_list__shows_names_prefixes_scopes_and_dates_never_a_secret_or_hash():
    secret = run("create", "planner-a", "--scopes", "read").strip().splitlines()[-1]
    run("create", "planner-b", "--scopes", "pause", "--expires", "12h")
    run("revoke", "planner-b", "--reason", "rotated")
    listing = run("list")
    assert "planner-a" in listing and "planner-b" in listing and secret[:12] in listing
    assert "2 tokens." in listing and "never" in listing
    assert secret not in listing and secret_sha256(secret) not in listing
    assert "prefix" in listing.splitlines()[0] and "revoked" in listing.splitlines()[0]


@pytest.mark.django_db
def test_revoke__refuses_the_token_from_then_on_and_says_so_twice():
    secret = run("create", "planner-x", "--scopes", "read").strip().splitlines()[-1]
    assert "revoked" in run("revoke", "planner-x", "--reason", "leaked")
    assert "already revoked" in run("revoke", "planner-x", "--reason", "again")
    with pytest.raises(Exception, match="revoked"):
        token_authenticate(secret=secret)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["create", "p", "--scopes", "read,approve"], "Unknown scope"),
        (["create", "p", "--scopes", ""], "at least one scope"),
        (["create", "bad name!", "--scopes", "read"], "not valid"),
        (["create", "p", "--scopes", "read", "--expires", "soon"], "--expires"),
        (["create", "p", "--scopes", "read", "--expires", "0d"], "--expires"),
        (["revoke", "nobody", "--reason", "x"], "no API token named"),
        (["revoke", "nobody", "--reason", " "], "reason"),
    ],
)
def test_bad_input__command_error_with_returncode_2_and_nothing_written(args, message):
    audit = AuditEntry.objects.count()
    with pytest.raises(CommandError, match=message) as refused:
        call_command("aol_token", *args, stdout=StringIO())
    assert refused.value.returncode == 2
    assert ApiToken.objects.count() == 0 and AuditEntry.objects.count() == audit


@pytest.mark.django_db
def test_create__a_name_in_use_is_refused():
    run("create", "dup", "--scopes", "read")
    with pytest.raises(CommandError, match="exists already"):
        run("create", "dup", "--scopes", "propose")
    assert ApiToken.objects.get(name="dup").scopes == ["read"]


@pytest.mark.django_db(transaction=True)
def test_subprocess__exit_codes_and_the_secret_only_on_stdout(daemon_env):
    created = subprocess.run(
        [sys.executable, "manage.py", "aol_token", "create", "sub", "--scopes", "read"],
        cwd=ROOT,
        env=daemon_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("aol_") and secret not in created.stderr
    listed = subprocess.run(
        [sys.executable, "manage.py", "aol_token", "list"],
        cwd=ROOT,
        env=daemon_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0 and "sub" in listed.stdout and secret not in listed.stdout + listed.stderr
    refused = subprocess.run(
        [sys.executable, "manage.py", "aol_token", "create", "sub2", "--scopes", "real"],
        cwd=ROOT,
        env=daemon_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "Unknown scope" in refused.stderr
