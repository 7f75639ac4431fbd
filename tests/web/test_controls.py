"""The status view's POST controls: permission, CSRF, reason, confirmation, audit and admin log."""

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from orchestration.models import Action, ActionStatus, AuditEntry, ExecutionLog
from orchestration.services.control import control_kill, control_pause, control_set_proof_mode
from orchestration.services.verbs import VERBS
from tests.console_fixtures import client_for, dead_action, denied_entries, flags_state

pytestmark = pytest.mark.django_db

#: verb → (POST data beyond the reason, flags (paused, killed, proof_mode) afterwards, setup)
CONTROL_CASES = {
    "pause": ({}, (True, False, True), None),
    "resume": ({}, (False, False, True), lambda: control_pause(actor="setup", reason="setup")),
    "kill": ({"kill-confirm": "on"}, (False, True, True), None),
    "revive": ({}, (False, False, True), lambda: control_kill(actor="setup", reason="setup")),
    "proof": ({}, (False, False, True), lambda: control_set_proof_mode(enabled=False, actor="setup", reason="s")),
    "real": ({"real-confirmation": "REAL"}, (False, False, False), None),
}
AUDIT_VERBS = {"proof": "switch to PROOF", "real": "switch to REAL"}
#: Which controls the "AOL operators" group may use (all but going REAL).
OPERATOR_MAY = {"pause", "resume", "kill", "revive", "proof"}


def control_url(verb: str) -> str:
    return reverse("orchestration:control", args=[verb])


def post_control(client: Client, verb: str, reason: str = "planned maintenance", **extra):
    data, _, _ = CONTROL_CASES[verb]
    return client.post(control_url(verb), {f"{verb}-reason": reason, **data, **extra})


@pytest.mark.parametrize("verb", CONTROL_CASES)
def test_control__superuser_changes_flags_and_it_is_audited_everywhere(verb, superuser):
    _, expected, setup = CONTROL_CASES[verb]
    if setup:
        setup()
    AuditEntry.objects.all().delete()
    before = flags_state()
    response = post_control(client_for(superuser), verb)
    assert response.status_code == 302 and response.url == reverse("orchestration:status")
    assert flags_state() == expected
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.verb, entry.outcome, entry.reason) == (
        "root",
        AUDIT_VERBS.get(verb, verb),
        "DONE",
        "planned maintenance",
    )
    changed_field = next(
        name for name, old, new in zip(("paused", "killed", "proof_mode"), before, expected, strict=True) if old != new
    )
    assert entry.before == {changed_field: before[("paused", "killed", "proof_mode").index(changed_field)]}
    assert ExecutionLog.objects.filter(
        actor="root", action_id__isnull=True, message__contains="planned maintenance"
    ).exists()
    log_entry = LogEntry.objects.get(user=superuser)
    assert log_entry.object_repr.startswith("paused=") and "planned maintenance" in log_entry.change_message


@pytest.mark.parametrize("verb", CONTROL_CASES)
def test_control__anonymous_is_sent_to_login_and_nothing_changes(verb):
    before = flags_state()
    response = post_control(Client(), verb)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login") + "?next=")
    assert flags_state() == before
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("verb", CONTROL_CASES)
def test_control__staff_without_permission_gets_403_nothing_changes_and_attempt_is_audited(verb, viewer):
    _, _, setup = CONTROL_CASES[verb]
    if setup:
        setup()
    before = flags_state()
    response = post_control(client_for(viewer), verb, reason="let me in")
    assert response.status_code == 403
    assert b"Nothing was changed" in response.content
    assert flags_state() == before
    denied = denied_entries(AUDIT_VERBS.get(verb, verb)).get()
    assert (denied.actor, denied.reason) == ("viewer", "let me in")
    assert denied.after["missing_permission"].startswith("orchestration.")


@pytest.mark.parametrize("verb", CONTROL_CASES)
def test_control__operator_group_may_do_all_but_go_real(verb, operator):
    _, expected, setup = CONTROL_CASES[verb]
    if setup:
        setup()
    before = flags_state()
    response = post_control(client_for(operator), verb)
    if verb in OPERATOR_MAY:
        assert response.status_code == 302
        assert flags_state() == expected
    else:
        assert response.status_code == 403
        assert flags_state() == before
        assert denied_entries("switch to REAL").get().after == {"missing_permission": "orchestration.switch_mode"}


def test_control__non_staff_user_gets_403(non_staff):
    response = post_control(client_for(non_staff), "pause")
    assert response.status_code == 403
    assert flags_state() == (False, False, True)


@pytest.mark.parametrize("verb", CONTROL_CASES)
def test_control__post_without_csrf_token_is_refused_with_403(verb, superuser):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    before = flags_state()
    response = post_control(client, verb)
    assert response.status_code == 403
    assert b"CSRF" in response.content
    assert flags_state() == before


def test_control__with_csrf_token_from_the_page_is_accepted(superuser):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    page = client.get(reverse("orchestration:status"))
    token = page.cookies["csrftoken"].value
    response = client.post(control_url("pause"), {"pause-reason": "r", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert flags_state()[0] is True


@pytest.mark.parametrize("verb", CONTROL_CASES)
def test_control__missing_reason_is_a_form_error_and_nothing_changes(verb, superuser):
    before = flags_state()
    response = post_control(client_for(superuser), verb, reason="  ")
    assert response.status_code == 200
    assert "Give a reason" in response.content.decode()
    assert flags_state() == before
    assert not AuditEntry.objects.exists()


def test_control_kill__without_confirmation_is_a_form_error(superuser):
    response = client_for(superuser).post(control_url("kill"), {"kill-reason": "stop it"})
    assert response.status_code == 200
    assert "Tick the box to confirm" in response.content.decode()
    assert flags_state()[1] is False


@pytest.mark.parametrize("typed", ["", "real", "yes", "REAL!"])
def test_control_real__without_typed_confirmation_is_a_form_error(typed, superuser):
    response = client_for(superuser).post(control_url("real"), {"real-reason": "go live", "real-confirmation": typed})
    assert response.status_code == 200
    assert "Type REAL" in response.content.decode()
    assert flags_state()[2] is True


def test_control__unknown_verb_is_404(superuser):
    assert client_for(superuser).post(control_url("explode"), {"explode-reason": "r"}).status_code == 404


def test_control__get_is_not_allowed(superuser):
    assert client_for(superuser).get(control_url("pause")).status_code == 405
    assert flags_state()[0] is False


# --- DLQ ---------------------------------------------------------------------------------------------


def dlq_url(operation: str) -> str:
    return reverse("orchestration:dlq", args=[operation])


def test_dlq_retry__selected_actions_go_back_to_pending(operator):
    first, second, untouched = dead_action(1), dead_action(2), dead_action(3)
    response = client_for(operator).post(
        dlq_url("retry"),
        {"dlq-scope": "selected", "dlq-action_ids": [first.pk, second.pk], "dlq-reason": "token renewed"},
        follow=True,
    )
    assert "Retry: 2 actions retried." in response.content.decode()
    statuses = dict(Action.objects.values_list("pk", "status"))
    assert statuses == {first.pk: "PENDING", second.pk: "PENDING", untouched.pk: "DLQ"}
    assert set(Action.objects.filter(status="PENDING").values_list("attempts", flat=True)) == {0}
    assert AuditEntry.objects.get(verb="retry DLQ", outcome="DONE").actor == "oper"
    assert LogEntry.objects.filter(user=operator).count() == 2


def test_dlq_retry__all(operator):
    for n in range(3):
        dead_action(n)
    client_for(operator).post(dlq_url("retry"), {"dlq-scope": "all", "dlq-reason": "all fixed"})
    assert not Action.objects.filter(status=ActionStatus.DLQ).exists()


def test_dlq_discard__marks_failed_never_deletes(operator):
    action = dead_action()
    client_for(operator).post(
        dlq_url("discard"), {"dlq-scope": "selected", "dlq-action_ids": [action.pk], "dlq-reason": "campaign over"}
    )
    action.refresh_from_db()
    assert action.status == ActionStatus.FAILED
    assert Action.objects.count() == 1


def test_dlq__nothing_selected_is_a_form_error(operator):
    action = dead_action()
    response = client_for(operator).post(dlq_url("retry"), {"dlq-scope": "selected", "dlq-reason": "r"})
    assert response.status_code == 200
    assert "Select at least one DLQ action" in response.content.decode()
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ


def test_dlq__bad_id_is_a_form_error(operator):
    response = client_for(operator).post(
        dlq_url("retry"), {"dlq-scope": "selected", "dlq-action_ids": ["1; drop"], "dlq-reason": "r"}
    )
    assert response.status_code == 200
    assert "is not an action id" in response.content.decode()


@pytest.mark.parametrize("operation", ["retry", "discard"])
def test_dlq__staff_without_permission_gets_403_and_nothing_changes(operation, viewer):
    action = dead_action()
    response = client_for(viewer).post(
        dlq_url(operation), {"dlq-scope": "selected", "dlq-action_ids": [action.pk], "dlq-reason": "r"}
    )
    assert response.status_code == 403
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ
    assert denied_entries(f"{operation} DLQ").count() == 1


@pytest.mark.parametrize("operation", ["retry", "discard"])
def test_dlq__anonymous_is_sent_to_login(operation):
    action = dead_action()
    response = Client().post(dlq_url(operation), {"dlq-scope": "all", "dlq-reason": "r"})
    assert response.status_code == 302 and "/admin/login/" in response.url
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ


def test_dlq__without_csrf_token_is_refused(superuser):
    action = dead_action()
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    assert client.post(dlq_url("retry"), {"dlq-scope": "all", "dlq-reason": "r"}).status_code == 403
    action.refresh_from_db()
    assert action.status == ActionStatus.DLQ


def needs_review_action(n: int = 0) -> Action:
    action = dead_action(n)
    Action.objects.filter(pk=action.pk).update(status=ActionStatus.NEEDS_REVIEW, last_error="outcome unknown")
    action.refresh_from_db()
    return action


def test_attention__lists_needs_review_actions_with_the_dlq_ones_and_says_which_is_which(viewer):
    dead, parked = dead_action(1), needs_review_action(2)
    client = client_for(viewer)
    page = client.get(reverse("orchestration:attention")).content.decode()
    table = page.split('id="dlq-table"')[1].split("</table>")[0]
    assert f'data-action-id="{parked.pk}"' in table and f'data-action-id="{dead.pk}"' in table
    assert '<span class="badge badge-NEEDS_REVIEW">NEEDS_REVIEW</span>' in table
    assert "All DLQ and NEEDS_REVIEW actions" in page
    # The Overview's "Recent problems" lists them too, and links to Attention.
    overview = client.get(reverse("orchestration:status")).content.decode()
    problems = overview.split('id="problems-table"')[1].split("</table>")[0]
    assert f'data-action-id="{parked.pk}"' in problems and f'data-action-id="{dead.pk}"' in problems
    assert f'href="{reverse("orchestration:attention")}"' in overview
    listed = client.get(reverse("orchestration:status_json")).json()["attention"]
    assert [(row["id"], row["status"]) for row in listed] == [(parked.pk, "NEEDS_REVIEW"), (dead.pk, "DLQ")]


@pytest.mark.parametrize(("operation", "after"), [("retry", ActionStatus.PENDING), ("discard", ActionStatus.FAILED)])
def test_attention__needs_review_action_retried_or_discarded_from_the_console(operation, after, operator):
    parked = needs_review_action()
    response = client_for(operator).post(
        dlq_url(operation),
        {"dlq-scope": "selected", "dlq-action_ids": [parked.pk], "dlq-reason": "checked the mailbox"},
        follow=True,
    )
    assert f"1 action {VERBS[operation].done}." in response.content.decode()
    parked.refresh_from_db()
    assert parked.status == after


def test_attention__all_scope_covers_needs_review_as_it_says(operator):
    dead, parked = dead_action(1), needs_review_action(2)
    response = client_for(operator).post(dlq_url("retry"), {"dlq-scope": "all", "dlq-reason": "r"}, follow=True)
    assert "2 actions retried." in response.content.decode()
    assert set(Action.objects.filter(pk__in=[dead.pk, parked.pk]).values_list("status", flat=True)) == {"PENDING"}


def test_attention__nothing_to_retry__form_error_nothing_changed(operator):
    action = dead_action()
    Action.objects.filter(pk=action.pk).update(status=ActionStatus.SUCCESS)
    response = client_for(operator).post(dlq_url("retry"), {"dlq-scope": "all", "dlq-reason": "r"})
    assert response.status_code == 200
    assert "Nothing to retry: no action is DLQ or NEEDS_REVIEW. Nothing changed." in response.content.decode()
    assert not AuditEntry.objects.exists()


# --- Enqueue -------------------------------------------------------------------------------------------

ENQUEUE_URL = reverse("orchestration:enqueue")
GOOD = {
    "enqueue-action_type": "POST_SOCIAL",
    "enqueue-payload": '{"platform": "twitter", "message": "launch day"}',
    "enqueue-reason": "smoke test",
}


def test_enqueue__creates_the_action_and_links_to_it(operator):
    response = client_for(operator).post(ENQUEUE_URL, {**GOOD, "enqueue-idempotency_key": "launch-1"}, follow=True)
    action = Action.objects.get()
    assert (action.action_type, action.idempotency_key, action.payload["message"]) == (
        "POST_SOCIAL",
        "launch-1",
        "launch day",
    )
    page = response.content.decode()
    assert f'<a href="{reverse("orchestration:action", args=[action.pk])}">action #{action.pk}</a>' in page
    assert response.redirect_chain == [(reverse("orchestration:actions"), 302)]
    assert AuditEntry.objects.get(verb="enqueue").actor == "oper"
    assert LogEntry.objects.get(user=operator).object_id == str(action.pk)


def test_enqueue__not_before_is_kept(operator):
    client_for(operator).post(ENQUEUE_URL, {**GOOD, "enqueue-not_before": "2031-01-02T03:04:05"})
    action = Action.objects.get()
    assert action.not_before.isoformat() == "2031-01-02T03:04:05+00:00"
    assert not Action.objects.due().exists()


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"enqueue-payload": "{not json"}, "payload", "Payload is not valid JSON"),
        ({"enqueue-payload": "[1, 2]"}, "payload", "Payload must be a JSON object"),
        ({"enqueue-payload": '{"platform": "myspace", "message": "hi"}'}, "payload", "is not supported"),
        ({"enqueue-payload": '{"platform": "twitter"}'}, "payload", "&#x27;message&#x27; is required"),
        ({"enqueue-action_type": "SEND_FAX"}, "action_type", "Select a valid choice"),
        ({"enqueue-not_before": "tomorrow-ish"}, "not_before", "Enter a valid date/time"),
        ({"enqueue-reason": ""}, "reason", "Give a reason"),
        ({"enqueue-idempotency_key": "bad\u0007key"}, "idempotency_key", "control characters"),
    ],
)
def test_enqueue__invalid_input_is_a_form_error_and_writes_nothing(changes, field, message, operator):
    response = client_for(operator).post(ENQUEUE_URL, {**GOOD, **changes})
    assert response.status_code == 200
    form = response.context["enqueue_form"]
    assert field in form.errors
    assert message in response.content.decode()
    assert not Action.objects.exists()
    assert not AuditEntry.objects.exists() and not ExecutionLog.objects.exists()


def test_enqueue__reused_key_with_another_payload_is_a_form_error(operator):
    client = client_for(operator)
    client.post(ENQUEUE_URL, {**GOOD, "enqueue-idempotency_key": "k"})
    response = client.post(
        ENQUEUE_URL,
        {**GOOD, "enqueue-idempotency_key": "k", "enqueue-payload": '{"platform": "x", "message": "different"}'},
    )
    assert "idempotency_key" in response.context["enqueue_form"].errors
    assert "already used by action" in response.content.decode()
    assert Action.objects.count() == 1
    assert AuditEntry.objects.filter(verb="enqueue").count() == 1


def test_enqueue__reused_key_with_same_payload_returns_the_existing_action(operator):
    client = client_for(operator)
    client.post(ENQUEUE_URL, {**GOOD, "enqueue-idempotency_key": "k"})
    response = client.post(ENQUEUE_URL, {**GOOD, "enqueue-idempotency_key": "k"}, follow=True)
    assert "already used by" in response.content.decode() and "nothing written" in response.content.decode()
    assert Action.objects.count() == 1


def test_enqueue__staff_without_permission_gets_403_and_no_row(viewer):
    response = client_for(viewer).post(ENQUEUE_URL, GOOD)
    assert response.status_code == 403
    assert not Action.objects.exists()
    assert denied_entries("enqueue").count() == 1


def test_enqueue__anonymous_is_sent_to_login_and_no_row():
    response = Client().post(ENQUEUE_URL, GOOD)
    assert response.status_code == 302 and "/admin/login/" in response.url
    assert not Action.objects.exists()


def test_enqueue__without_csrf_token_is_refused(superuser):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    assert client.post(ENQUEUE_URL, GOOD).status_code == 403
    assert not Action.objects.exists()
