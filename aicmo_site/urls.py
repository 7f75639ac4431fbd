from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "AICMO operator console"
admin.site.site_title = "AICMO"
admin.site.index_title = "Autonomy Orchestration Layer"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("console/", include("orchestration.urls")),
    path("admin/", admin.site.urls),
]
