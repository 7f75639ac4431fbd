"""The client address for login throttling, trusting X-Forwarded-For only as far as configured."""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _valid_ip(text: str) -> str | None:
    text = text.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The client's address as seen by the outermost trusted hop (AICMO_TRUSTED_PROXY_HOPS).

    With no trusted proxy the socket peer (REMOTE_ADDR) is the client: X-Forwarded-For is written
    by the client itself then, and believing it would let anyone pick a fresh address per attempt.
    With N trusted proxies, each appends the address it received from; the N-th entry from the
    right was written by the outermost trusted proxy. Anything left of it is the client's own claim.
    """
    remote = _valid_ip(request.META.get("REMOTE_ADDR", "") or "")
    hops = getattr(settings, "AICMO_TRUSTED_PROXY_HOPS", 0)
    if not hops:
        return remote
    forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote  # the request did not come through every trusted proxy
    return _valid_ip(forwarded[-hops]) or remote
