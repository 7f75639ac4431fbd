"""Admin pages for the AOL tables, registered here.

Changes go through the services (the same ones the status view uses), so every one is logged and
audited: ``actions`` (the queue and its bulk verbs), ``settings`` (flags, schedules, rate limits),
``records`` (the read-only records), ``tokens`` (the planner's API tokens), ``accounts`` (connected
accounts, their credentials write-only).
"""

from django.contrib import admin

from orchestration.admin.accounts import AccountAdmin
from orchestration.admin.actions import ActionAdmin
from orchestration.admin.records import (
    ActionTypePauseAdmin,
    AuditEntryAdmin,
    ExecutionLogAdmin,
    LeaseAdmin,
    TickLedgerAdmin,
)
from orchestration.admin.settings import ControlFlagsAdmin, RateLimitAdmin, ScheduleAdmin
from orchestration.admin.tokens import ApiTokenAdmin
from orchestration.models import (
    Account,
    Action,
    ActionTypePause,
    ApiToken,
    AuditEntry,
    ControlFlags,
    ExecutionLog,
    Lease,
    RateLimit,
    Schedule,
    TickLedger,
)

admin.site.register(Action, ActionAdmin)
admin.site.register(ControlFlags, ControlFlagsAdmin)
admin.site.register(Schedule, ScheduleAdmin)
admin.site.register(RateLimit, RateLimitAdmin)
admin.site.register(Lease, LeaseAdmin)
admin.site.register(TickLedger, TickLedgerAdmin)
admin.site.register(ExecutionLog, ExecutionLogAdmin)
admin.site.register(AuditEntry, AuditEntryAdmin)
admin.site.register(ActionTypePause, ActionTypePauseAdmin)
admin.site.register(ApiToken, ApiTokenAdmin)
admin.site.register(Account, AccountAdmin)
