from django.urls import include, path


def broken_status(request):
    raise RuntimeError("template exploded")


urlpatterns = [path("aol-test/", include(([path("status/", broken_status, name="status")], "orchestration")))]
