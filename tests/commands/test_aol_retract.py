"""``manage.py aol_retract``: a thin command over the retract verb (call_command, and once as a process)."""

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orchestration.models import Action, ActionStatus, AuditEntry
from tests.conftest import ROOT
from tests.platform_servers.local_network import CREDENTIALS_KEY, TOKEN, account_connect, posted_action, real_post

MANAGE = str(ROOT / "tests" / "platform_servers" / "manage_local_network.py")


@pytest.mark.django_db
def test_aol_retract__deletes_the_post_and_says_so(local_network):
    posted = posted_action(local_network)
    out = StringIO()
    call_command("aol_retract", str(posted.pk), "--reason", "wrong price", "--actor", "cli:ann", stdout=out)
    assert out.getvalue() == "1 action retracted (post deleted).\n"
    posted.refresh_from_db()
    assert posted.status == ActionStatus.RETRACTED and local_network.deleted == [posted.remote_id]
    entry = AuditEntry.objects.get(verb="retract")
    assert (entry.actor, entry.reason) == ("cli:ann", "wrong price")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"status": ActionStatus.PENDING}, "is PENDING; only a SUCCESS action's post can be retracted"),
        ({"claimed_mode": "PROOF"}, "ran in PROOF mode: nothing was posted"),
    ],
)
def test_aol_retract__refuses_with_exit_1_and_changes_nothing(local_network, change, words):
    posted = posted_action(local_network)
    Action.objects.filter(pk=posted.pk).update(**change)
    with pytest.raises(CommandError, match=words) as refused:
        call_command("aol_retract", str(posted.pk), "--reason", "r")
    assert refused.value.returncode == 1
    assert not AuditEntry.objects.filter(verb="retract").exists() and local_network.deleted == []


@pytest.mark.django_db
def test_aol_retract__a_reason_is_required():
    with pytest.raises(CommandError, match="the following arguments are required: --reason"):
        call_command("aol_retract", "1")


@pytest.mark.django_db(transaction=True)
def test_aol_retract__as_a_process_after_a_real_daemon_run(local_network, daemon_env):
    account_connect(local_network)
    action = real_post()
    env = {**daemon_env, "AOL_CREDENTIALS_KEYS": CREDENTIALS_KEY}
    done = subprocess.run(
        [sys.executable, MANAGE, "aol_retract", str(action.pk), "--reason", "recalled"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, "1 action retracted (post deleted).\n"), done.stderr
    action.refresh_from_db()
    assert action.status == ActionStatus.RETRACTED and local_network.deleted == [action.remote_id]
    again = subprocess.run(
        [sys.executable, MANAGE, "aol_retract", str(action.pk), "--reason", "again"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and f"#{action.pk} is already RETRACTED. Nothing changed." in again.stderr
    assert TOKEN not in done.stdout + done.stderr + again.stdout + again.stderr
