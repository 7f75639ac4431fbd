"""``/favicon.ico``: browsers ask for it on every site, whatever the page links; answer with the console's icon."""

from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

#: The icon the pages link (static/orchestration/favicon.svg), served from this app's files: no CDN, no redirect.
FAVICON = Path(__file__).resolve().parent.parent / "static" / "orchestration" / "favicon.svg"


@require_GET
@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponse(FAVICON.read_bytes(), content_type="image/svg+xml")
