"""The operator console's URLs (namespace ``orchestration``), mounted under /console/."""

from django.urls import path

from orchestration import health_views, views

app_name = "orchestration"

urlpatterns = [
    path("diagnostics/", health_views.diagnostics, name="diagnostics"),
    path("", views.status, name="status"),
    path("status.json", views.status_json, name="status_json"),
    path("control/<slug:verb>/", views.control_change, name="control"),
    path("dlq/<slug:operation>/", views.dlq_change, name="dlq"),
    path("enqueue/", views.enqueue, name="enqueue"),
    # Flow control (docs/flow-control.md)
    path("types/<slug:verb>/", views.type_pause_change, name="type_pause"),
    path("actions/<slug:operation>/", views.queue_actions_change, name="queue_actions"),
    path("approvals/", views.approvals, name="approvals"),
    path("approvals/<int:action_id>/", views.approval_detail, name="approval"),
    path("approvals/<int:action_id>/<slug:decision>/", views.approval_decide, name="approval_decide"),
]
