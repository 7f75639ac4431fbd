"""Admin pages for the five AOL tables: inspection tools, read-only where the data is a record."""

from django.contrib import admin

from orchestration.models import Action, ControlFlags, ExecutionLog, Lease, TickLedger


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only records: viewable, never edited or deleted through the admin."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Action)
class ActionAdmin(ReadOnlyAdmin):
    list_display = ("id", "action_type", "status", "attempts", "not_before", "updated_at", "idempotency_key")
    list_filter = ("status", "action_type")
    search_fields = ("=idempotency_key",)
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(ExecutionLog)
class ExecutionLogAdmin(ReadOnlyAdmin):
    list_display = ("id", "ts", "level", "action_id", "actor", "message", "artifact_ref")
    list_filter = ("level",)
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(TickLedger)
class TickLedgerAdmin(ReadOnlyAdmin):
    list_display = ("id", "started_at", "status", "actions_attempted", "actions_succeeded", "owner", "notes")
    list_filter = ("status",)
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ("owner", "token", "acquired_at", "renewed_at", "expires_at")


@admin.register(ControlFlags)
class ControlFlagsAdmin(ReadOnlyAdmin):
    list_display = ("paused", "killed", "proof_mode", "updated_at", "updated_by")
