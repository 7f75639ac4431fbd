"""Control flags as an audited singleton; lease, ledger, logs and audit read-only; the operators group."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from orchestration.models import AuditEntry, ControlFlags, ExecutionLog, Lease, TickLedger
from orchestration.permissions import OPERATORS_GROUP
from orchestration.services.control import control_pause
from orchestration.services.lease import lease_acquire_or_renew
from orchestration.services.logs import log_write
from tests.console_fixtures import client_for, flags_state

pytestmark = pytest.mark.django_db

FLAGS_CHANGE = reverse("admin:orchestration_controlflags_change", args=[ControlFlags.SINGLETON_ID])


def flags_form(**changes):
    data = {"paused": "", "killed": "", "proof_mode": "on", "reason": "from the admin"}
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_control_flags_admin__changelist_goes_to_the_singleton(superuser):
    response = client_for(superuser).get(reverse("admin:orchestration_controlflags_changelist"))
    assert response.status_code == 302 and response.url == FLAGS_CHANGE


def test_control_flags_admin__no_add_no_delete(superuser):
    client = client_for(superuser)
    assert client.get(reverse("admin:orchestration_controlflags_add")).status_code == 403
    assert client.post(reverse("admin:orchestration_controlflags_delete", args=[1]), {"post": "yes"}).status_code == 403
    assert ControlFlags.objects.count() == 1


def test_control_flags_admin__edit_goes_through_the_services_and_is_audited(superuser):
    response = client_for(superuser).post(FLAGS_CHANGE, flags_form(paused="on", reason="deploying"))
    assert response.status_code == 302
    assert flags_state() == (True, False, True)
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.verb, entry.before, entry.after, entry.reason) == (
        "root",
        "pause",
        {"paused": False},
        {"paused": True},
        "deploying",
    )
    assert ExecutionLog.objects.filter(message__startswith="pause by root").exists()
    assert ControlFlags.objects.get().updated_by == "root"


def test_control_flags_admin__reason_is_required(superuser):
    response = client_for(superuser).post(FLAGS_CHANGE, flags_form(paused="on", reason=""))
    assert response.status_code == 200
    assert flags_state() == (False, False, True)
    assert not AuditEntry.objects.exists()


def test_control_flags_admin__kill_needs_confirmation(superuser):
    client = client_for(superuser)
    response = client.post(FLAGS_CHANGE, flags_form(killed="on"))
    assert response.status_code == 200 and "Tick to confirm" in response.content.decode()
    assert flags_state()[1] is False
    client.post(FLAGS_CHANGE, flags_form(killed="on", confirm_kill="on"))
    assert flags_state()[1] is True


def test_control_flags_admin__real_needs_typed_confirmation(superuser):
    client = client_for(superuser)
    response = client.post(FLAGS_CHANGE, flags_form(proof_mode=""))
    assert response.status_code == 200 and "Type REAL" in response.content.decode()
    assert flags_state()[2] is True
    client.post(FLAGS_CHANGE, flags_form(proof_mode="", confirm_real="REAL"))
    assert flags_state()[2] is False
    assert AuditEntry.objects.get(verb="switch to REAL").outcome == "DONE"


def test_control_flags_admin__operator_cannot_change_the_mode(operator):
    client = client_for(operator)
    page = client.get(FLAGS_CHANGE).content.decode()
    assert 'name="paused"' in page and 'name="proof_mode"' not in page  # read-only for them
    client.post(FLAGS_CHANGE, flags_form(proof_mode="", confirm_real="REAL", paused="on"))
    assert flags_state() == (True, False, True)


def test_control_flags_admin__viewer_sees_but_cannot_change(viewer):
    client = client_for(viewer)
    assert client.get(FLAGS_CHANGE).status_code == 200
    assert client.post(FLAGS_CHANGE, flags_form(paused="on")).status_code == 403
    assert flags_state() == (False, False, True)


@pytest.mark.parametrize("model", ["lease", "tickledger", "executionlog", "auditentry"])
def test_record_admins__are_read_only(model, superuser):
    client = client_for(superuser)
    assert client.get(reverse(f"admin:orchestration_{model}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:orchestration_{model}_add")).status_code == 403


def test_record_admins__show_useful_columns(superuser):
    lease_acquire_or_renew(owner="host-a:99", ttl_seconds=30)
    now = timezone.now()
    TickLedger.objects.create(started_at=now, finished_at=now, status="PAUSED", owner="host-a:99")
    log_write(message="moved to DLQ: boom", action_id=7, level="ERROR")
    control_pause(actor="alice", reason="lunch")
    client = client_for(superuser)
    lease_page = client.get(reverse("admin:orchestration_lease_changelist")).content.decode()
    assert "host-a:99" in lease_page and "light-green" in lease_page
    assert "badge-PAUSED" in client.get(reverse("admin:orchestration_tickledger_changelist")).content.decode()
    logs = client.get(reverse("admin:orchestration_executionlog_changelist")).content.decode()
    assert "badge-ERROR" in logs and reverse("admin:orchestration_action_change", args=[7]) in logs
    audit = client.get(reverse("admin:orchestration_auditentry_changelist")).content.decode()
    assert "alice" in audit and "lunch" in audit and "paused=False → paused=True" in audit


@pytest.mark.parametrize("term", ["7", "#7"])
def test_execution_log_admin__search_by_action_id(term, superuser):
    log_write(message="for seven", action_id=7)
    log_write(message="for eight", action_id=8)
    response = client_for(superuser).get(reverse("admin:orchestration_executionlog_changelist"), {"q": term})
    assert [log.message for log in response.context["cl"].result_list] == ["for seven"]


def test_execution_log_admin__text_search(superuser):
    log_write(message="artifact written", action_id=7)
    response = client_for(superuser).get(reverse("admin:orchestration_executionlog_changelist"), {"q": "written"})
    assert len(response.context["cl"].result_list) == 1


def test_lease_admin__cannot_be_edited(superuser):
    lease_acquire_or_renew(owner="host-a:99", ttl_seconds=30)
    client_for(superuser).post(reverse("admin:orchestration_lease_change", args=[1]), {"owner": "me"})
    assert Lease.objects.get().owner == "host-a:99"


def test_operators_group__has_every_console_permission_but_switch_mode():
    codenames = set(Group.objects.get(name=OPERATORS_GROUP).permissions.values_list("codename", flat=True))
    assert {"pause_daemon", "kill_daemon", "manage_dlq", "enqueue_action"} <= codenames
    assert "switch_mode" not in codenames
    assert {"view_action", "view_auditentry", "view_executionlog"} <= codenames


def test_superuser__can_do_everything(superuser):
    for perm in ("pause_daemon", "kill_daemon", "switch_mode", "manage_dlq", "enqueue_action"):
        assert superuser.has_perm(f"orchestration.{perm}")
