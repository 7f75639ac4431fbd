"""The console's flow control: approvals pages, per-type pause, cancel and priority, deferrals, enqueue."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils.html import escape

from orchestration.adapters.artifacts import artifact_path
from orchestration.daemon import Daemon, DaemonConfig
from orchestration.models import Action, ActionStatus, ActionTypePause, AuditEntry, ExecutionLog, RateLimit
from orchestration.services.claim import action_claim_due
from orchestration.services.control import control_pause_type, control_set_proof_mode
from orchestration.services.enqueue import action_enqueue
from tests.console_fixtures import client_for, denied_entries
from tests.factories import OWNER, hold_lease
from tests.fake_adapters import FLOW_ADAPTERS

pytestmark = pytest.mark.django_db

STATUS = reverse("orchestration:status")
STATUS_JSON = reverse("orchestration:status_json")
MESSAGE = "Spring sale <b>starts</b> today"


@pytest.fixture
def approver(operator):
    """An operator who may also approve (the group does not include it)."""
    operator.user_permissions.add(Permission.objects.get(codename="approve_action"))
    return type(operator).objects.get(pk=operator.pk)  # fresh permission cache


@pytest.fixture
def awaiting(settings):
    """A REAL POST_SOCIAL that ran in PROOF and waits for approval."""
    settings.AOL_EXTRA_ADAPTERS = FLOW_ADAPTERS
    control_set_proof_mode(enabled=False, actor="setup", reason="REAL")
    action = action_enqueue(
        action_type="POST_SOCIAL",
        payload={"platform": "threads", "account": "acme", "message": MESSAGE},
        idempotency_key="sale-1",
    )[0]
    Daemon(DaemonConfig.from_settings(owner="test:1"), out=lambda line: None).tick(0)
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL
    AuditEntry.objects.all().delete()
    return action


def frozen(action: Action) -> tuple:
    action.refresh_from_db()
    return action.status, action.approved_at, ExecutionLog.objects.filter(action_id=action.pk).count()


def decide(client, action: Action, decision: str, reason: str = "checked the copy", sha256: str | None = None):
    data = {f"{decision}-reason": reason}
    if decision == "approve":
        data["approve-sha256"] = action.approval_sha256 if sha256 is None else sha256
    return client.post(reverse("orchestration:approval_decide", args=[action.pk, decision]), data)


# --- Approvals --------------------------------------------------------------------------------------------


def test_approvals_view__lists_the_action_awaiting_approval_with_its_hash(awaiting, viewer):
    overview = client_for(viewer).get(STATUS).content.decode()
    assert f'href="{reverse("orchestration:approvals")}" id="approvals-waiting"' in overview
    page = client_for(viewer).get(reverse("orchestration:approvals")).content.decode()
    assert 'id="approvals-table"' in page
    assert reverse("orchestration:approval", args=[awaiting.pk]) in page
    assert awaiting.approval_sha256 in page
    data = client_for(viewer).get(STATUS_JSON).json()
    assert data["counts"]["AWAITING_APPROVAL"] == 1
    assert data["approvals"][0] | {} == {
        "id": awaiting.pk,
        "action_type": "POST_SOCIAL",
        "idempotency_key": "sale-1",
        "priority": 0,
        "artifact_ref": awaiting.approval_artifact_ref,
        "artifact_sha256": awaiting.approval_sha256,
        "updated_at": data["approvals"][0]["updated_at"],
    }


def test_approval_page__shows_the_artifact_escaped_and_its_hashes(awaiting, viewer):
    page = client_for(viewer).get(reverse("orchestration:approval", args=[awaiting.pk])).content.decode()
    assert "Spring sale &lt;b&gt;starts&lt;/b&gt; today" in page and "<b>starts</b>" not in page
    assert page.count(awaiting.approval_sha256) >= 3  # recorded, file now, rendered now
    assert 'id="artifact-verified"' in page
    assert "You lack <code>orchestration.approve_action</code>" in page
    listing = client_for(viewer).get(reverse("orchestration:approvals")).content.decode()
    assert awaiting.approval_artifact_ref in listing


def test_approve__with_the_permission__due_again_bound_to_the_hash_and_audited(awaiting, approver):
    response = decide(client_for(approver), awaiting, "approve")
    assert response.status_code == 302 and response.url == reverse("orchestration:approvals")
    awaiting.refresh_from_db()
    assert (awaiting.status, awaiting.approved_by) == (ActionStatus.PENDING, "oper")
    entry = AuditEntry.objects.get(verb="approve")
    assert (entry.actor, entry.outcome, entry.reason) == ("oper", "DONE", "checked the copy")


def test_reject__ends_rejected_and_audited(awaiting, approver):
    decide(client_for(approver), awaiting, "reject", reason="wrong price")
    awaiting.refresh_from_db()
    assert awaiting.status == ActionStatus.REJECTED
    assert AuditEntry.objects.get(verb="reject").reason == "wrong price"


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_approve_and_reject__without_the_permission__403_audited_nothing_changed(awaiting, operator, decision):
    before = frozen(awaiting)
    response = decide(client_for(operator), awaiting, decision, reason="let me")
    assert response.status_code == 403
    assert "orchestration.approve_action" in response.content.decode()
    assert frozen(awaiting) == before
    entry = denied_entries(decision).get()
    assert (entry.actor, entry.target, entry.reason) == ("oper", f"action #{awaiting.pk}", "let me")


def test_approve__artifact_file_changed__clear_error_nothing_changed(awaiting, approver):
    artifact_path(awaiting.approval_artifact_ref).write_text("Buy now!!! (edited on disk)\n")
    before = frozen(awaiting)
    page = decide(client_for(approver), awaiting, "approve").content.decode()
    assert "cannot be approved: The artifact file changed since it was made" in page
    assert frozen(awaiting) == before and not AuditEntry.objects.exists()


def test_approve__a_stale_hash_from_an_old_page__clear_error_nothing_changed(awaiting, approver):
    before = frozen(awaiting)
    page = decide(client_for(approver), awaiting, "approve", sha256="f" * 64).content.decode()
    assert "is not the one awaiting approval" in page
    assert frozen(awaiting) == before


def test_approve__an_action_not_awaiting_approval__clear_error_nothing_changed(approver):
    action = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    before = frozen(action)
    page = decide(client_for(approver), action, "approve", sha256="a" * 64).content.decode()
    assert f"Action #{action.pk} is PENDING, not AWAITING_APPROVAL" in page
    assert frozen(action) == before
    detail = client_for(approver).get(reverse("orchestration:approval", args=[action.pk])).content.decode()
    assert 'id="not-awaiting"' in detail and 'id="approve-form"' not in detail


def test_approve__without_a_reason__asks_for_one(awaiting, approver):
    page = decide(client_for(approver), awaiting, "approve", reason="").content.decode()
    assert "Give a reason" in page
    assert frozen(awaiting)[0] == ActionStatus.AWAITING_APPROVAL


# --- Per-type pause ----------------------------------------------------------------------------------------


def test_pause_type__operator_pauses_it_and_the_status_view_says_who_and_why(operator):
    client = client_for(operator)
    response = client.post(
        reverse("orchestration:type_pause", args=["pause"]),
        {"types-action_type": "POST_SOCIAL", "types-reason": "legal review"},
    )
    assert response.status_code == 302
    pause = ActionTypePause.objects.get()
    assert (pause.action_type, pause.paused_by, pause.reason) == ("POST_SOCIAL", "oper", "legal review")
    page = client.get(STATUS).content.decode()
    assert 'id="banner-types-paused"' in page and "legal review" in page
    assert client.get(STATUS_JSON).json()["paused_types"][0]["paused_by"] == "oper"
    client.post(
        reverse("orchestration:type_pause", args=["resume"]),
        {"types-action_type": "POST_SOCIAL", "types-reason": "cleared"},
    )
    assert not ActionTypePause.objects.exists()
    assert list(AuditEntry.objects.values_list("verb", flat=True).order_by("id")) == ["pause type", "resume type"]


def test_pause_type__without_pause_daemon__403_audited_nothing_changed(viewer):
    response = client_for(viewer).post(
        reverse("orchestration:type_pause", args=["pause"]),
        {"types-action_type": "POST_SOCIAL", "types-reason": "x"},
    )
    assert response.status_code == 403
    assert not ActionTypePause.objects.exists()
    assert denied_entries("pause type").get().target == "action type POST_SOCIAL"


def test_pause_type__unknown_type__form_error_nothing_changed(operator):
    page = client_for(operator).post(
        reverse("orchestration:type_pause", args=["pause"]), {"types-action_type": "NOPE", "types-reason": "x"}
    )
    assert "Select a valid choice" in page.content.decode()
    assert not ActionTypePause.objects.exists() and not AuditEntry.objects.exists()


# --- Cancel and priority ---------------------------------------------------------------------------------


def queue_post(client, operation: str, ids: str, reason: str = "campaign pulled", **extra):
    data = {"queue-action_ids": ids, "queue-reason": reason, **{f"queue-{k}": v for k, v in extra.items()}}
    return client.post(reverse("orchestration:queue_actions", args=[operation]), data)


def test_cancel__waiting_ones_cancelled_running_one_asked_to_stop(operator):
    running = action_enqueue(action_type="SLEEP", payload={"seconds": 1})[0]
    waiting = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    [claimed] = action_claim_due(owner=OWNER, token=hold_lease(), limit=1, proof=True)
    assert claimed.pk == running.pk
    response = queue_post(client_for(operator), "cancel", f"#{waiting.pk}, {running.pk}")
    assert response.status_code == 302
    assert Action.objects.get(pk=waiting.pk).status == ActionStatus.CANCELLED
    running.refresh_from_db()
    assert (running.status, running.cancel_requested) == (ActionStatus.RUNNING, True)
    page = client_for(operator).get(reverse("orchestration:schedules")).content.decode()
    assert 'id="cancel-requested"' in page and f"#{running.pk}</a> (SLEEP)" in page
    # The action's own page says so, and no longer offers Cancel.
    page = client_for(operator).get(reverse("orchestration:action", args=[running.pk])).content.decode()
    assert 'id="action-cancel-requested"' in page and 'id="verb-cancel"' not in page


def test_cancel__a_finished_action__clear_error_nothing_changed(operator):
    waiting = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    done = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    Action.objects.filter(pk=done.pk).update(status=ActionStatus.SUCCESS)
    page = queue_post(client_for(operator), "cancel", f"{done.pk}").content.decode()
    assert f"#{done.pk} is SUCCESS" in page and "Nothing changed" in page
    assert Action.objects.get(pk=waiting.pk).status == ActionStatus.PENDING
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    ("ids", "extra", "message"),
    [
        ("12; drop table", {}, "is not an action id"),
        ("", {}, "Name at least one action id"),
        ("1", {"priority": "101"}, "less than or equal to 100"),
        ("1", {"priority": ""}, "Give the new priority"),
    ],
)
def test_priority_and_cancel__bad_input__form_error_nothing_changed(operator, ids, extra, message):
    action = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    ids = ids.replace("1", str(action.pk)) if ids == "1" else ids
    page = queue_post(client_for(operator), "priority", ids, **extra).content.decode()
    assert message in page
    assert Action.objects.get(pk=action.pk).priority == 0 and not AuditEntry.objects.exists()


def test_set_priority__changes_it_and_without_manage_dlq_is_refused(operator, viewer):
    action = action_enqueue(action_type="SLEEP", payload={"seconds": 0})[0]
    assert queue_post(client_for(viewer), "priority", str(action.pk), priority="9").status_code == 403
    assert Action.objects.get(pk=action.pk).priority == 0
    assert denied_entries("set priority").exists()
    queue_post(client_for(operator), "priority", str(action.pk), priority="9")
    assert Action.objects.get(pk=action.pk).priority == 9


# --- Enqueue, deferrals, counts ---------------------------------------------------------------------------


def test_enqueue__priority_and_requires_approval_from_the_form(operator):
    client_for(operator).post(
        reverse("orchestration:enqueue"),
        {
            "enqueue-action_type": "SLEEP",
            "enqueue-payload": '{"seconds": 1}',
            "enqueue-priority": "42",
            "enqueue-requires_approval": "on",
            "enqueue-reason": "drill",
        },
    )
    action = Action.objects.get()
    assert (action.priority, action.requires_approval) == (42, True)
    assert AuditEntry.objects.get(verb="enqueue").after["priority"] == 42


def test_enqueue__priority_out_of_range__form_error_nothing_written(operator):
    page = client_for(operator).post(
        reverse("orchestration:enqueue"),
        {
            "enqueue-action_type": "SLEEP",
            "enqueue-payload": '{"seconds": 1}',
            "enqueue-priority": "-101",
            "enqueue-reason": "x",
        },
    )
    assert "greater than or equal to -100" in page.content.decode()
    assert not Action.objects.exists()


def test_schedules_view__shows_deferrals_the_limits_in_force_and_the_new_counts(viewer):
    RateLimit.objects.create(action_type="POST_SOCIAL", key_fields="platform,account", max_count=1, period_seconds=3600)
    for n in range(2):
        action_enqueue(
            action_type="POST_SOCIAL", payload={"platform": "threads", "account": "acme", "message": f"m{n}"}
        )
    action_claim_due(owner=OWNER, token=hold_lease(), limit=2, proof=True)
    control_pause_type(action_type="SLEEP", actor="alice", reason="drill over")
    data = client_for(viewer).get(STATUS_JSON).json()
    [deferred] = data["deferred"]
    assert deferred["rate_key"] == "threads|acme" and deferred["note"].startswith("deferred: rate limit 1 per 1h")
    assert data["rate_limits"][0]["description"] == "1 per 1h per platform+account"
    assert {"AWAITING_APPROVAL", "CANCELLED", "REJECTED"} <= set(data["counts"])
    page = client_for(viewer).get(reverse("orchestration:schedules")).content.decode()
    assert escape(deferred["note"]) in page and 'data-type="SLEEP" class="type-paused"' in page
    overview = client_for(viewer).get(STATUS).content.decode()
    assert json.loads(overview.split('id="aol-snapshot" type="application/json">')[1].split("</script>")[0])["deferred"]
