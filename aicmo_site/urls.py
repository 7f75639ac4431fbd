from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from orchestration.api.http import api
from orchestration.web import health

admin.site.site_header = "AICMO operator console"
admin.site.site_title = "AICMO"
admin.site.index_title = "Autonomy Orchestration Layer"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="orchestration:status", permanent=False)),
    path("console/", include("orchestration.urls")),
    path("admin/", admin.site.urls),
    # The planner's HTTP API (docs/api.md); its schema at /api/v1/openapi.json, its docs at /api/v1/docs.
    path("api/v1/", api.urls),
    # Probes and metrics at the root, where load balancers and Prometheus look for them.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
]
