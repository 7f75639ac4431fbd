"""The operator console's URLs (namespace ``orchestration``), mounted under /console/."""

from django.urls import path

from orchestration import health_views

app_name = "orchestration"

urlpatterns = [
    path("diagnostics/", health_views.diagnostics, name="diagnostics"),
]
