from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse
from django.urls import include, path


@staff_member_required
def status_placeholder(request):
    return HttpResponse(f"status for {request.user.username}")


urlpatterns = [path("aol-test/", include(([path("status/", status_placeholder, name="status")], "orchestration")))]
