"""What every console view shares: the navigation bar, the error summary at the top, where a control returns."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import Resolver404, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from orchestration import permissions
from orchestration.services.console import console_nav_counts

#: The console's views, in the navigation's order: (url name, label, badge key of console_nav_counts()).
NAV = (
    ("status", "Overview", ""),
    ("actions", "Actions", ""),
    ("approvals", "Approvals", "approvals"),
    ("attention", "Attention", "attention"),
    ("calendar", "Calendar", ""),
    ("schedules", "Schedules & limits", ""),
    ("audit", "Audit", ""),
)

#: The element id of each console form, by form prefix, for the error summary's links.
FORM_IDS = {
    "dlq": "dlq-form",
    "types": "type-pause-form",
    "queue": "queue-actions-form",
    "enqueue": "enqueue-form",
    "approve": "approve-form",
    "reject": "reject-form",
    "filter": "filter-form",
}
#: The heading of each form in the error summary.
FORM_TITLES = {
    "dlq": "Retry or discard",
    "types": "Pause or resume a type",
    "queue": "Requeue, cancel or set priority",
    "enqueue": "Enqueue an action",
    "approve": "Approve",
    "reject": "Reject",
    "filter": "Filter",
}


def console_context(
    request: HttpRequest, *, view: str, title: str, bound: dict[str, forms.Form] | None = None, **extra: Any
) -> dict[str, Any]:
    """The admin's context, the navigation (``view`` is the current one) and the summary of ``bound``'s errors."""
    counts = console_nav_counts()
    return {
        **admin.site.each_context(request),
        "title": title,
        "nav": [
            {
                "name": name,
                "label": label,
                "url": reverse(f"orchestration:{name}"),
                "current": name == view,
                "badge": counts.get(badge, 0) if badge else 0,
            }
            for name, label, badge in NAV
        ],
        "view": view,
        "form_errors": form_errors_summary(bound or {}),
        "return_to": request.get_full_path(),
        "permissions": permissions,
        **extra,
    }


def form_errors_summary(bound: dict[str, forms.Form]) -> list[dict[str, Any]]:
    """One entry per form with errors: its title, the anchor of the form, and its messages."""
    summary = []
    for prefix, form in bound.items():
        if not form.errors:
            continue
        messages = [str(message) for errors in form.errors.values() for message in errors]
        # A control-flag form is prefixed by its verb (pause, kill, …) and is the element control-<verb>.
        summary.append(
            {
                "anchor": FORM_IDS.get(prefix, f"control-{prefix}"),
                "title": FORM_TITLES.get(prefix, prefix.capitalize()),
                "messages": messages,
            }
        )
    return summary


def return_path(request: HttpRequest, *, default: str) -> str:
    """The console page a control was posted from (its hidden ``return_to``), or ``default``.

    Only a path of this site under the console is followed, so a crafted form cannot send the
    operator elsewhere.
    """
    candidate = request.POST.get("return_to", "")
    console = reverse("orchestration:status")
    if (
        candidate.startswith(console)
        and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()})
        and _resolves(candidate)
    ):
        return candidate
    return default


def _resolves(path: str) -> bool:
    try:
        resolve(path.split("?", 1)[0])
    except Resolver404:
        return False
    return True
