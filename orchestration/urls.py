"""The operator console's URLs (namespace ``orchestration``), mounted under /console/."""

from django.urls import path

from orchestration.services.operator_verb import CONSOLE_ACTIONS, CONSOLE_ATTENTION, CONSOLE_FLAGS, CONSOLE_TYPES
from orchestration.web import approvals, controls, health, pages, status

app_name = "orchestration"

urlpatterns = [
    path("diagnostics/", health.diagnostics, name="diagnostics"),
    # The views, in the navigation's order (web/layout.py NAV)
    path("", status.status, name="status"),
    path("status.json", status.status_json, name="status_json"),
    path("actions/", pages.actions, name="actions"),
    path("actions/<int:action_id>/", pages.action, name="action"),
    path("attention/", pages.attention, name="attention"),
    path("calendar/", pages.calendar, name="calendar"),
    path("schedules/", pages.schedules, name="schedules"),
    path("audit/", pages.audit, name="audit"),
    # The operator verbs, by console group (services/verbs.py VERBS)
    path("control/<slug:slug>/", controls.operate, {"group": CONSOLE_FLAGS}, name="control"),
    path("dlq/<slug:slug>/", controls.operate, {"group": CONSOLE_ATTENTION}, name="dlq"),
    path("types/<slug:slug>/", controls.operate, {"group": CONSOLE_TYPES}, name="type_pause"),
    path("actions/<slug:slug>/", controls.operate, {"group": CONSOLE_ACTIONS}, name="queue_actions"),
    path("enqueue/", controls.enqueue, name="enqueue"),
    path("approvals/", approvals.approvals, name="approvals"),
    path("approvals/<int:action_id>/", approvals.approval_detail, name="approval"),
    path("approvals/<int:action_id>/<slug:decision>/", approvals.approval_decide, name="approval_decide"),
]
