"""The operator console's URLs (namespace ``orchestration``), mounted under /console/."""

from django.urls import path

from orchestration import health_views, views
from orchestration.services.operator_verb import CONSOLE_ACTIONS, CONSOLE_ATTENTION, CONSOLE_FLAGS, CONSOLE_TYPES

app_name = "orchestration"

urlpatterns = [
    path("diagnostics/", health_views.diagnostics, name="diagnostics"),
    path("", views.status, name="status"),
    path("status.json", views.status_json, name="status_json"),
    # The operator verbs, by console group (services/verbs.py VERBS)
    path("control/<slug:slug>/", views.operate, {"group": CONSOLE_FLAGS}, name="control"),
    path("dlq/<slug:slug>/", views.operate, {"group": CONSOLE_ATTENTION}, name="dlq"),
    path("types/<slug:slug>/", views.operate, {"group": CONSOLE_TYPES}, name="type_pause"),
    path("actions/<slug:slug>/", views.operate, {"group": CONSOLE_ACTIONS}, name="queue_actions"),
    path("enqueue/", views.enqueue, name="enqueue"),
    path("approvals/", views.approvals, name="approvals"),
    path("approvals/<int:action_id>/", views.approval_detail, name="approval"),
    path("approvals/<int:action_id>/<slug:decision>/", views.approval_decide, name="approval_decide"),
]
