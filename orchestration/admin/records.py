"""Admin pages for the append-only records: leases, ticks, execution logs, audit entries, paused types.

They are inspection tools: read-only, with filters that use indexes and a paginator that never
counts a whole large table.
"""

from typing import Any

from django.contrib import admin
from django.contrib.admin.filters import DateFieldListFilter
from django.contrib.admin.options import ShowFacets
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator

from orchestration.dbclock import DbNow
from orchestration.models import AuditEntry, ExecutionLog, Lease, TickLedger
from orchestration.services.lease import lease_health_of
from orchestration.services.status import table_rows_estimate

#: Changelists count at most this many rows (then say "more than …"), so a page load never
#: counts a table of millions; pages stop there too, so no page needs a deep OFFSET.
COUNT_CAP = 10_000


class EstimatedCountPaginator(Paginator):
    """Never counts a whole large table, and never claims a total it did not count.

    Unfiltered on PostgreSQL, above COUNT_CAP rows: ``estimate`` is the planner's row estimate
    (shown as "about N"). Otherwise, filtered or searched lists and SQLite count at most
    COUNT_CAP + 1 matching rows, without ORDER BY so any index may answer (``capped`` beyond it:
    "more than N"). Either way ``count`` is at most COUNT_CAP, so the page links end there.
    """

    capped = False
    estimate: int | None = None

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if not isinstance(object_list, QuerySet):
            return len(object_list)
        if not object_list.query.where:
            estimate = table_rows_estimate(model=object_list.model)
            if estimate is not None and estimate > COUNT_CAP:
                self.estimate, self.capped = estimate, True
                return COUNT_CAP
        counted = object_list.order_by()[: COUNT_CAP + 1].count()
        self.capped = counted > COUNT_CAP
        return min(counted, COUNT_CAP)


def badge(value: str) -> str:
    return format_html('<span class="badge badge-{}">{}</span>', value, value)


class InspectionAdmin(admin.ModelAdmin):
    """Append-only records: viewable, never edited or deleted through the admin."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    list_per_page = 100

    class Media:
        css = {"all": ["orchestration/console.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LeaseAdmin(InspectionAdmin):
    list_display = ("holder", "state_badge", "token", "acquired_at", "renewed_at", "expires_at")
    readonly_fields = ("owner", "token", "acquired_at", "renewed_at", "expires_at")

    @admin.display(description="holder")
    def holder(self, obj: Lease) -> str:
        return obj.owner or "— (free)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lease]:
        return super().get_queryset(request).annotate(db_now=DbNow())  # the badge's clock: the database's

    @admin.display(description="state")
    def state_badge(self, obj: Lease) -> str:
        state = lease_health_of(obj).state
        return format_html('<span class="light light-{}" title="{}"></span>{}', state, state, state)


class TickLedgerAdmin(InspectionAdmin):
    list_display = ("id", "started_at", "status_badge", "duration", "actions_attempted", "actions_succeeded", "owner")
    list_filter = ("status", ("started_at", DateFieldListFilter))
    search_fields = ("=owner",)
    search_help_text = "Exact owner (hostname:pid:<8 hex>)."
    ordering = ("-started_at", "-id")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: TickLedger) -> str:
        return badge(obj.status)

    @admin.display(description="duration")
    def duration(self, obj: TickLedger) -> str:
        return f"{obj.duration_seconds:.3f} s"


class ExecutionLogAdmin(InspectionAdmin):
    list_display = ("id", "ts", "level_badge", "action_link", "actor", "message_short", "artifact_ref")
    list_filter = ("level", ("ts", DateFieldListFilter))
    search_fields = ("message", "=actor", "=artifact_sha256")
    search_help_text = "An action id (e.g. 42 or #42), an exact actor or SHA-256, or words from the message."
    ordering = ("-id",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip().lstrip("#")
        if term.isdigit():
            return queryset.filter(Q(action_id=int(term)) | Q(message__icontains=term)), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="level", ordering="level")
    def level_badge(self, obj: ExecutionLog) -> str:
        return badge(obj.level)

    @admin.display(description="action")
    def action_link(self, obj: ExecutionLog) -> str:
        if not obj.action_id:
            return "—"
        return format_html(
            '<a href="{}">#{}</a>', reverse("admin:orchestration_action_change", args=[obj.action_id]), obj.action_id
        )

    @admin.display(description="message")
    def message_short(self, obj: ExecutionLog) -> str:
        return Truncator(obj.message).chars(120)


class AuditEntryAdmin(InspectionAdmin):
    list_display = ("ts", "actor", "verb", "outcome_badge", "target", "change", "reason")
    list_filter = ("outcome", "verb", ("ts", DateFieldListFilter))
    search_fields = ("=actor", "reason", "target")
    ordering = ("-id",)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: AuditEntry) -> str:
        return badge(obj.outcome)

    @admin.display(description="before → after")
    def change(self, obj: AuditEntry) -> str:
        def compact(value: dict) -> str:
            return ", ".join(f"{k}={v}" for k, v in value.items() if k != "ids") or "—"

        return f"{compact(obj.before)} → {compact(obj.after)}"


class ActionTypePauseAdmin(InspectionAdmin):
    """Paused action types: pause and resume them on the status view or with ``aol_control pause --type``."""

    list_display = ("action_type", "paused_by", "paused_at", "reason")
    ordering = ("paused_at",)
