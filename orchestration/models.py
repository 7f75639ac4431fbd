"""The AOL's tables: control flags, tick ledger, lease, action queue, execution logs, audit trail,
schedules, paused action types and rate limits.

Table names are fixed by the seeds (``aol_*``). Invariants live in the database as constraints,
so a shell session that bypasses the services still cannot write an impossible row.
"""

from datetime import datetime
from typing import Any, Self
from urllib.parse import urlsplit

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now  # noqa: TID251  (the column default below)
from django.db.models.lookups import In
from django.utils import timezone

from orchestration.dbclock import DbNow, db_now
from orchestration.periods import period_next


class ControlFlags(models.Model):
    """The operators' switches for the daemon: one row, id 1."""

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    paused = models.BooleanField(default=False, help_text="Ticks run but claim nothing.")
    killed = models.BooleanField(default=False, help_text="The daemon releases its lease and exits.")
    proof_mode = models.BooleanField(default=True, help_text="Adapters write artifacts instead of acting.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        db_table = "aol_control_flags"
        verbose_name = "control flags"
        verbose_name_plural = "control flags"
        # The operator console's permissions (see orchestration/permissions.py). Going back to
        # PROOF only needs pause_daemon; going REAL needs switch_mode.
        permissions = [
            ("pause_daemon", "Can pause and resume the daemon, and switch it back to PROOF"),
            ("kill_daemon", "Can kill and revive the daemon"),
            ("switch_mode", "Can switch the daemon between PROOF and REAL mode"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="aol_control_flags_singleton"),
        ]

    def __str__(self) -> str:
        mode = "PROOF" if self.proof_mode else "REAL"
        return f"paused={self.paused} killed={self.killed} mode={mode}"


class TickStatus(models.TextChoices):
    SUCCESS = "SUCCESS"  # every attempted action succeeded (or there was nothing to do)
    PARTIAL = "PARTIAL"  # some attempted actions succeeded, some did not
    FAIL = "FAIL"  # nothing attempted succeeded, or the tick itself failed
    PAUSED = "PAUSED"  # the paused flag was set: nothing was claimed
    KILLED = "KILLED"  # the killed flag was set: the daemon released its lease and stopped
    BLOCKED = "BLOCKED"  # the artifact store is unusable: claiming paused, no attempt counted; notes say why


class TickLedger(models.Model):
    """One row per daemon tick: what it did and how long it took."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=TickStatus.choices)
    actions_attempted = models.PositiveIntegerField(default=0)
    actions_succeeded = models.PositiveIntegerField(default=0)
    owner = models.CharField(max_length=255, blank=True, help_text="hostname:pid:<8 hex> of the daemon")
    lease_token = models.BigIntegerField(null=True, blank=True)
    notes = models.TextField(blank=True)
    queue_depth = models.JSONField(
        default=dict, blank=True, help_text="Open actions per status when the tick ended (for the depth chart)"
    )

    class Meta:
        db_table = "aol_tick_ledger"
        verbose_name = "tick"
        indexes = [
            models.Index(fields=["-started_at"], name="aol_tick_started_idx"),
            # The admin's status filter ("show me the FAIL ticks") without a scan of the ledger.
            models.Index(fields=["status", "-started_at"], name="aol_tick_status_idx"),
        ]

    def __str__(self) -> str:
        return f"tick {self.pk} {self.status}"

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


class Lease(models.Model):
    """The daemon lease: one row, id 1. Whoever holds an unexpired lease is the only worker.

    ``token`` is a fencing token: it grows by one on every new acquisition (never on renewal),
    so work claimed under an older token can be told apart and refused.
    """

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    owner = models.CharField(max_length=255, blank=True, help_text="hostname:pid:<8 hex>; empty when released")
    token = models.BigIntegerField(default=0)
    acquired_at = models.DateTimeField(null=True, blank=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    proof_forced_by = models.CharField(
        max_length=100,
        blank=True,
        default="",
        db_default="",  # an older daemon's INSERT, during an upgrade, names no such column
        help_text="Why the holder runs in PROOF whatever the proof_mode flag says (its command line's --proof, "
        "AOL_PROOF_MODE=1); empty: the flag decides. Published so the console shows the mode really applied.",
    )

    class Meta:
        db_table = "aol_lease"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="aol_lease_singleton"),
            models.CheckConstraint(condition=Q(token__gte=0), name="aol_lease_token_non_negative"),
        ]

    def __str__(self) -> str:
        return f"lease {self.owner or '(free)'} token={self.token}"


class ActionStatus(models.TextChoices):
    PENDING = "PENDING"  # enqueued, waiting for its not_before time and a daemon
    READY = "READY"  # due and waiting; the queue treats it like PENDING
    RUNNING = "RUNNING"  # claimed by the daemon holding lease token `lease_token`
    SUCCESS = "SUCCESS"  # done; terminal
    FAILED = "FAILED"  # given up by an operator (discarded from the DLQ); terminal
    RETRY = "RETRY"  # failed transiently; due again at not_before
    DLQ = "DLQ"  # dead: out of attempts or failed permanently; waits for an operator
    NEEDS_REVIEW = "NEEDS_REVIEW"  # outcome unknown after a crash of a non-idempotent REAL attempt; a person decides
    # Flow control (docs/flow-control.md):
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # its PROOF artifact waits for a person to approve the REAL run
    REJECTED = "REJECTED"  # a person rejected its PROOF artifact; never runs for real; terminal
    CANCELLED = "CANCELLED"  # cancelled by an operator before it ran (or stopped on request); terminal
    RETRACTED = "RETRACTED"  # its REAL post was deleted on the platform by an operator (retract verb); terminal


DUE_STATUSES = (ActionStatus.PENDING, ActionStatus.READY, ActionStatus.RETRY)
#: Due actions never attempted (nor recovered after a crash): only these are claimed in batches.
FIRST_ATTEMPT_STATUSES = (ActionStatus.PENDING, ActionStatus.READY)
#: Statuses of actions still waiting for the daemon or an operator: the queue's depth.
#: Statuses that wait for a person: retry or discard them from the console or the admin.
ATTENTION_STATUSES = (ActionStatus.DLQ, ActionStatus.NEEDS_REVIEW)
OPEN_STATUSES = (*DUE_STATUSES, ActionStatus.RUNNING, *ATTENTION_STATUSES, ActionStatus.AWAITING_APPROVAL)
#: Statuses an action never leaves on its own (operators cannot retry them either).
TERMINAL_STATUSES = (
    ActionStatus.SUCCESS,
    ActionStatus.FAILED,
    ActionStatus.REJECTED,
    ActionStatus.CANCELLED,
    ActionStatus.RETRACTED,
)
#: Statuses an operator may cancel outright; a RUNNING action can only be asked to stop.
CANCELLABLE_STATUSES = (*DUE_STATUSES, ActionStatus.AWAITING_APPROVAL)
#: Statuses whose priority an operator may still change.
REPRIORITISABLE_STATUSES = (*DUE_STATUSES, ActionStatus.AWAITING_APPROVAL)
#: Statuses counted by rate limits: actions that acted (or are acting) in the window. A retracted post
#: was still posted: the platform counted it, so the rate limit does too.
RATE_COUNTED_STATUSES = (ActionStatus.SUCCESS, ActionStatus.RUNNING, ActionStatus.RETRACTED)
MIN_PRIORITY, MAX_PRIORITY = -100, 100
#: Longest remote id and URL an Action keeps (longer ids are cut, longer URLs dropped).
REMOTE_ID_MAX_LENGTH, REMOTE_URL_MAX_LENGTH = 255, 2000


class ActionQuerySet(models.QuerySet["Action"]):
    def due(self) -> Self:
        """Actions a daemon may claim now, in claim order: highest priority first, then oldest due first."""
        return self.filter(status__in=DUE_STATUSES, not_before__lte=DbNow()).order_by("-priority", "not_before", "id")

    def running(self) -> Self:
        return self.filter(status=ActionStatus.RUNNING)

    def orphaned(self, *, current_token: int) -> Self:
        """RUNNING actions claimed under an older lease token: their daemon is gone."""
        return self.running().filter(lease_token__lt=current_token)

    def needing_attention(self) -> Self:
        """Actions that wait for a person to retry or discard them: DLQ and NEEDS_REVIEW."""
        return self.filter(status__in=ATTENTION_STATUSES)

    def awaiting_approval(self) -> Self:
        return self.filter(status=ActionStatus.AWAITING_APPROVAL)

    def deferred(self) -> Self:
        """Waiting actions a rate limit pushed back (see services/rate_limits.py), soonest first."""
        return self.filter(status__in=DUE_STATUSES).exclude(deferred_note="").order_by("not_before", "id")


class ClaimedMode(models.TextChoices):
    PROOF = "PROOF"  # the attempt wrote an artifact instead of acting
    REAL = "REAL"  # the attempt acted on the world


class InArray(In):
    """``pk__in_array=[…]``: ``IN (%s, %s, …)``, but ``= ANY(%s::bigint[])`` on PostgreSQL.

    The daemon fences every batch of up to AOL_CLAIM_BATCH_SIZE ids this way: one array parameter
    and one statement text whatever the batch's size, where IN has a parameter per id, each bound
    client-side and the text re-parsed for every new length.
    """

    lookup_name = "in_array"

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        ids = [value for value in self.rhs if value is not None]
        return f"{lhs} = ANY(%s::{self.lhs.output_field.cast_db_type(connection)}[])", [*lhs_params, ids]


class Action(models.Model):
    """One queued marketing action."""

    # Unique through a UniqueConstraint (Meta), not unique=True: on PostgreSQL unique=True also builds
    # a second, varchar_pattern_ops index for LIKE look-ups that nothing uses and every INSERT pays for.
    idempotency_key = models.CharField(max_length=255)
    action_type = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=20, choices=ActionStatus.choices, default=ActionStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Counted when claimed.")
    # Django's Now(), not DbNow(): changing the default would rebuild the table on SQLite, and a default
    # with three fractional digits there only compares as the earlier of two equal instants (due, not late).
    not_before = models.DateTimeField(db_default=Now(), help_text="Not claimed before this time.")
    last_error = models.TextField(blank=True)
    claimed_by = models.CharField(max_length=255, blank=True, help_text="hostname:pid:<8 hex> of the last claimer")
    lease_token = models.BigIntegerField(null=True, blank=True, help_text="Lease token of the last claim")
    claimed_mode = models.CharField(
        max_length=8,
        choices=ClaimedMode.choices,
        blank=True,
        help_text="Mode of the last attempt; decides what recovery may do when its outcome is unknown",
    )
    claimed_in_batch = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Its last claim took it with other actions, so if its daemon died it may not have started "
        "(recovery does not count that attempt)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # --- Flow control (docs/flow-control.md) ---
    priority = models.SmallIntegerField(
        default=0,
        validators=[MinValueValidator(MIN_PRIORITY), MaxValueValidator(MAX_PRIORITY)],
        help_text=f"Higher runs first ({MIN_PRIORITY} to {MAX_PRIORITY}); first in, first out within a priority.",
    )
    requires_approval = models.BooleanField(
        default=False, help_text="In REAL mode, a person approves its PROOF artifact first (also set per type)."
    )
    approval_artifact_ref = models.CharField(
        max_length=500,
        blank=True,
        help_text="The PROOF artifact shown for approval (path under AOL_ARTIFACTS_DIR, or db:sha256:<hex>)",
    )
    approval_sha256 = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of that artifact; the REAL run is bound to it once approved"
    )
    approved_by = models.CharField(max_length=255, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approval_notified_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its approvers were told it waits (services/approval_notify.py); set before sending, so "
        "a daemon restart never tells them twice",
    )
    planned_payload = models.JSONField(
        null=True,
        blank=True,
        help_text="The payload as enqueued, kept when an approver edited it before approving (empty: never "
        "edited); a later enqueue of the same key with it is the same action, not a conflict",
    )
    cancel_requested = models.BooleanField(
        default=False, help_text="An operator asked the running attempt to stop; it ends CANCELLED."
    )
    deferred_note = models.CharField(
        max_length=500, blank=True, help_text="Why a rate limit pushed not_before back; cleared when claimed"
    )
    rate_key = models.CharField(
        max_length=255, blank=True, help_text="Rate-limit key taken from the payload (e.g. platform|account)"
    )
    rate_counted_at = models.DateTimeField(
        null=True, blank=True, help_text="When a claim of it was counted against its rate limits"
    )
    # --- What a REAL success made in the world (recorded with the SUCCESS, in the same UPDATE) ---
    remote_id = models.CharField(
        max_length=REMOTE_ID_MAX_LENGTH,
        blank=True,
        default="",
        db_default="",
        help_text="The remote side's id of what the REAL run made (a post id, an email's Message-ID, an event id)",
    )
    remote_url = models.CharField(
        max_length=REMOTE_URL_MAX_LENGTH,
        blank=True,
        default="",
        db_default="",
        help_text="Where what the REAL run made can be seen (a link only when it is http or https)",
    )

    objects = ActionQuerySet.as_manager()

    class Meta:
        db_table = "aol_actions"
        permissions = [
            ("manage_dlq", "Can retry, discard and requeue actions"),
            ("enqueue_action", "Can enqueue actions from the operator console"),
            ("approve_action", "Can approve or reject PROOF artifacts before their REAL run"),
            ("retract_action", "Can retract (delete on its platform) a post a REAL action made"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="aol_actions_idempotency_key_uniq"),
            models.CheckConstraint(condition=Q(status__in=ActionStatus.values), name="aol_actions_status_valid"),
            models.CheckConstraint(
                condition=~Q(status=ActionStatus.RUNNING) | Q(lease_token__isnull=False),
                name="aol_actions_running_has_token",
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=MIN_PRIORITY, priority__lte=MAX_PRIORITY),
                name="aol_actions_priority_range",
            ),
        ]
        indexes = [
            # The dequeue query: due statuses ordered by (-priority, not_before, id); small because
            # it only holds rows that still have to run.
            models.Index(
                fields=["-priority", "not_before", "id"],
                condition=Q(status__in=DUE_STATUSES),
                name="aol_actions_due_idx",
            ),
            # Rate limits: counted runs of one key in a window, and the slots already promised to
            # deferred actions of that key. Only rows of rate-limited types are in it.
            models.Index(
                fields=["action_type", "rate_key", "rate_counted_at"],
                condition=~Q(rate_key=""),
                name="aol_actions_rate_idx",
            ),
            # The status view's "deferred by a rate limit" list (ActionQuerySet.deferred()): only rows
            # a rate limit pushed back are in it, so the list never reads the whole due backlog.
            models.Index(
                fields=["not_before", "id"],
                condition=Q(status__in=DUE_STATUSES) & ~Q(deferred_note=""),
                name="aol_actions_deferred_idx",
            ),
            # The status view's approvals list, in its order; only AWAITING_APPROVAL rows are in it.
            # (updated_at changes on every save, but nearly every save of an action also changes its
            # status, which is indexed already: no HOT update is lost in practice.)
            models.Index(
                fields=["-priority", "updated_at", "id"],
                condition=Q(status=ActionStatus.AWAITING_APPROVAL),
                name="aol_actions_approval_idx",
            ),
            # Per-status counts (open statuses exactly, by an index-only scan), the admin's status filter.
            models.Index(fields=["status", "action_type"], name="aol_actions_status_idx"),
            models.Index(fields=["-created_at"], name="aol_actions_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action_type} #{self.pk} ({self.status})"

    @property
    def remote_href(self) -> str:
        """``remote_url`` when it is safe to render as a link (http or https with a host), else ''."""
        return remote_href(self.remote_url)


def remote_href(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, else '' (never a javascript: or data: link)."""
    if not url or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return ""
    parts = urlsplit(url)
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


class LogLevel(models.TextChoices):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class ExecutionLog(models.Model):
    """Append-only trace of what happened to actions, and of operator changes (action_id empty)."""

    action_id = models.BigIntegerField(null=True, blank=True, help_text="Soft reference to aol_actions.id")
    ts = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.INFO)
    message = models.TextField()
    actor = models.CharField(max_length=255, blank=True, help_text="operator or daemon (hostname:pid:<8 hex>)")
    artifact_ref = models.CharField(
        max_length=500, blank=True, help_text="Path under AOL_ARTIFACTS_DIR, or db:sha256:<hex> in aol_artifacts"
    )
    artifact_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "aol_execution_logs"
        verbose_name = "execution log"
        indexes = [
            models.Index(fields=["action_id", "id"], name="aol_logs_action_idx"),
            models.Index(fields=["-ts"], name="aol_logs_ts_idx"),
            # The admin's level filter (ERROR rows are rare among millions) without a scan.
            models.Index(fields=["level", "-id"], name="aol_logs_level_idx"),
        ]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:60]}"


class Artifact(models.Model):
    """A PROOF artifact of the database store (AOL_ARTIFACT_STORE=database), keyed by its SHA-256.

    Written in the transaction that records the action's SUCCESS (or its wait for approval), so the
    record and its artifact exist together or not at all, and every host reads it. Referenced as
    ``db:sha256:<hex>``; actions whose artifacts have the same bytes share one row.
    """

    sha256 = models.CharField(max_length=64, primary_key=True)
    content = models.BinaryField()
    size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100)
    name = models.CharField(
        max_length=500, blank=True, help_text="The name it was first written under (its path in the files store)"
    )
    created_at = models.DateTimeField(default=timezone.now)
    #: Set again whenever an action records these bytes once more: retention (aol_prune) counts from here,
    #: and the row lock that write takes makes a concurrent prune skip the row (see services/retention.py).
    last_written_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "aol_artifacts"
        verbose_name = "artifact"
        indexes = [models.Index(fields=["last_written_at"], name="aol_artifacts_written_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(size__gte=0), name="aol_artifacts_size_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"sha256:{self.sha256} ({self.size} bytes)"


class AuditOutcome(models.TextChoices):
    DONE = "DONE"  # the change was made
    NO_CHANGE = "NO_CHANGE"  # allowed, but nothing needed changing (already so, or no eligible rows)
    DENIED = "DENIED"  # refused: the user lacks the permission; nothing changed


class AuditEntry(models.Model):
    """Append-only operator audit trail: who did what, when, before → after, and why.

    Written by every control change (console, admin, CLI) and by every refused attempt.
    """

    ts = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=255, help_text="username, or cli:user@host")
    verb = models.CharField(max_length=64, help_text="pause, resume, kill, revive, switch to REAL, retry DLQ, …")
    outcome = models.CharField(max_length=16, choices=AuditOutcome.choices)
    target = models.CharField(max_length=255, blank=True, help_text="what was acted on")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        db_table = "aol_audit_log"
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"
        constraints = [
            models.CheckConstraint(condition=Q(outcome__in=AuditOutcome.values), name="aol_audit_outcome_valid"),
        ]
        indexes = [models.Index(fields=["-ts"], name="aol_audit_ts_idx")]

    def __str__(self) -> str:
        return f"{self.actor} {self.verb} ({self.outcome})"


# --- API tokens -----------------------------------------------------------------------------------
# How the AI planner (and any other program) reaches the AOL over HTTP and MCP.


class TokenScope(models.TextChoices):
    READ = "read"  # read actions, their artifacts and the status
    PROPOSE = "propose"  # queue actions (REAL effects still wait for a person's approval)
    CANCEL = "cancel"  # cancel actions
    PAUSE = "pause"  # pause and kill the daemon (resuming and reviving stay with people)


class ApiToken(models.Model):
    """A bearer token for the planner API and the MCP server; only its SHA-256 is stored.

    Scopes can only read, propose, cancel and stop: no scope approves, rejects, switches to REAL,
    resumes, revives or edits rate limits. Those stay with signed-in staff who hold the permission.
    """

    name = models.CharField(max_length=100, unique=True, help_text="Who uses it, e.g. planner-prod")
    prefix = models.CharField(max_length=16, help_text="The secret's first characters, to recognise it")
    secret_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, help_text="Any of read, propose, cancel, pause")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=255, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused from this time on; empty: never")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=255, blank=True)
    # The write rate limit's fixed window (services/tokens.py token_write_admit): the minute (Unix
    # time // 60, database clock) and the writes counted in it. On the token's row, so that every
    # web worker process counts against the same number.
    write_window = models.BigIntegerField(default=0, editable=False)
    write_count = models.IntegerField(default=0, editable=False)

    class Meta:
        db_table = "aol_api_tokens"
        verbose_name = "API token"
        ordering = ["name"]
        # Creating and revoking tokens (see orchestration/permissions.py): not in the operators' group.
        permissions = [("manage_api_tokens", "Can create and revoke API tokens")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def actor(self) -> str:
        """How audit rows and logs name this token."""
        return f"token:{self.name}"


# --- Schedules ------------------------------------------------------------------------------------
# Kept apart at the end of the module: recurring actions the lease holder enqueues once per period.


class Schedule(models.Model):
    """A recurring action: fired by the lease holder once per period (cron expression or interval).

    Periods are instants in UTC: for a cron expression, its matching minutes; for an interval, the
    multiples of ``interval_seconds`` since the Unix epoch (so 3600 fires on the hour). Each fired
    action's idempotency key is ``schedule:<id>:<period start>``, so a period can never be queued
    twice, whichever daemon fires it and however often.
    """

    MAX_CATCH_UP = 100

    name = models.CharField(max_length=100, unique=True)
    action_type = models.CharField(max_length=64)
    payload_template = models.JSONField(
        default=dict,
        blank=True,
        help_text="The payload of every fired action. In its text values {period} becomes the period's start "
        "(ISO 8601, UTC) and {schedule} the schedule's name.",
    )
    cron = models.CharField(
        max_length=100,
        blank=True,
        help_text="Cron expression in UTC, five fields: minute hour day-of-month month day-of-week "
        "(e.g. '0 9 * * 1-5'), or @hourly/@daily/@weekly/@monthly. Leave empty to use an interval.",
    )
    interval_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Fire every this many seconds instead of on a cron expression."
    )
    enabled = models.BooleanField(default=True)
    catch_up = models.PositiveSmallIntegerField(
        default=1,
        help_text="After the daemon was down, at most this many missed periods fire (the newest); "
        f"1 to {MAX_CATCH_UP}. Periods while the schedule is disabled are skipped, not missed.",
    )
    last_period_at = models.DateTimeField(
        null=True, blank=True, help_text="Start of the newest period already fired (or passed over)."
    )
    next_run_at = models.DateTimeField(
        null=True, blank=True, help_text="Start of the next period to fire; empty while disabled."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "aol_schedules"
        ordering = ("name",)
        constraints = [
            models.CheckConstraint(
                condition=(Q(cron="") & Q(interval_seconds__isnull=False) & Q(interval_seconds__gt=0))
                | (~Q(cron="") & Q(interval_seconds__isnull=True)),
                name="aol_schedules_cron_xor_interval",
            ),
            models.CheckConstraint(
                condition=Q(catch_up__gte=1) & Q(catch_up__lte=100), name="aol_schedules_catch_up_range"
            ),
        ]
        indexes = [
            # The daemon's per-tick question "is any schedule due?": a tiny index of enabled rows.
            models.Index(fields=["next_run_at"], condition=Q(enabled=True), name="aol_schedules_due_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Saves with ``next_run_at`` worked out from the rule (``periods_restart``)."""
        self.periods_restart(now=db_now())
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "next_run_at", "last_period_at"}
        super().save(*args, **kwargs)

    @property
    def rule(self) -> str:
        return self.cron or f"every {self.interval_seconds}s"

    def period_next(self, *, after: datetime) -> datetime:
        """The first period start strictly after ``after``."""
        return period_next(cron=self.cron, interval_seconds=self.interval_seconds, after=after)

    def periods_restart(self, *, now: datetime) -> None:
        """Set ``next_run_at`` (and restart the periods of a re-enabled schedule) before it is saved.

        A new or re-enabled schedule starts with the first period after ``now``: periods that passed
        while it did not exist or was disabled are not missed ones. A changed rule starts after the
        newest period already fired. Its validation (``schedule_clean`` in services/schedules.py)
        is the form's and the service's, which know the adapters.
        """
        was_enabled = None
        if self.pk is not None:
            was_enabled = Schedule.objects.filter(pk=self.pk).values_list("enabled", flat=True).first()
        if not self.enabled:
            self.next_run_at = None
            return
        if was_enabled is not True:  # new, or disabled until now
            self.last_period_at = None
        self.next_run_at = self.period_next(after=self.last_period_at or now)


# --- Flow control: per-type pauses and rate limits (docs/flow-control.md) ----------------------------


class ActionTypePause(models.Model):
    """One paused action type: the daemon claims none of its actions while the row exists.

    Written only through ``control_pause_type`` / ``control_resume_type`` (audited); the global
    pause (``ControlFlags.paused``) still stops everything.
    """

    action_type = models.CharField(max_length=64, primary_key=True)
    paused_by = models.CharField(max_length=255)
    reason = models.TextField()
    paused_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "aol_action_type_pauses"
        verbose_name = "paused action type"

    def __str__(self) -> str:
        return f"{self.action_type} paused by {self.paused_by}"


class RateLimit(models.Model):
    """At most ``max_count`` runs of ``action_type`` per key in any ``period_seconds`` window.

    The key is made of the payload fields in ``key_fields`` (for POST_SOCIAL: ``platform,account``);
    empty means one key for the whole type. Rows for an action type replace the defaults from
    AOL_RATE_LIMITS for that type (a disabled row switches them off).
    """

    action_type = models.CharField(max_length=64)
    key_fields = models.CharField(
        max_length=200,
        blank=True,
        help_text="Comma-separated payload fields forming the key, e.g. platform,account; empty: the whole type.",
    )
    max_count = models.PositiveIntegerField(validators=[MinValueValidator(1)], help_text="Runs allowed per window")
    period_seconds = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="The window, in seconds (3600: an hour, 86400: a day)"
    )
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=255, blank=True)

    class Meta:
        db_table = "aol_rate_limits"
        verbose_name = "rate limit"
        constraints = [
            models.CheckConstraint(condition=Q(max_count__gte=1), name="aol_rate_limits_max_count_positive"),
            models.CheckConstraint(condition=Q(period_seconds__gte=1), name="aol_rate_limits_period_positive"),
        ]
        indexes = [models.Index(fields=["action_type"], name="aol_rate_limits_type_idx")]

    def __str__(self) -> str:
        key = f" per {self.key_fields}" if self.key_fields else ""
        return f"{self.action_type}: {self.max_count} per {self.period_seconds}s{key}"


# --- Connected accounts -----------------------------------------------------------------------------
# The platform accounts REAL adapters act as. Credentials are encrypted at rest (services/accounts.py).


class AccountPlatform(models.TextChoices):
    MASTODON = "mastodon"  # an instance's API with an access token
    BLUESKY = "bluesky"  # an AT Protocol PDS with a handle and an app password
    X = "x"  # the X (Twitter) API
    LINKEDIN = "linkedin"  # the LinkedIn API


class Account(models.Model):
    """A connected account: a name payloads use, its platform and base URL, and encrypted credentials.

    ``credentials_encrypted`` is a Fernet token (AOL_CREDENTIALS_KEYS) of the credentials' JSON; only
    services/accounts.py reads or writes it, and nothing shows it. ``credential_fields`` keeps the
    credentials' field names (never their values), so a person can see what is stored.
    """

    name = models.CharField(max_length=64, unique=True, help_text="What payloads name it by, e.g. brand-main")
    platform = models.CharField(max_length=16, choices=AccountPlatform.choices)
    base_url = models.CharField(
        max_length=500, blank=True, help_text="The instance or API base URL, where the platform has one"
    )
    credentials_encrypted = models.TextField(editable=False)
    credential_fields = models.JSONField(default=list, editable=False, help_text="Names of the stored fields")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=255, blank=True)

    class Meta:
        db_table = "aol_accounts"
        verbose_name = "connected account"
        ordering = ["name"]
        # Adding, changing and removing accounts: granted person by person, like API tokens.
        permissions = [("manage_accounts", "Can add, change and remove connected accounts")]
        constraints = [
            models.CheckConstraint(
                condition=Q(platform__in=AccountPlatform.values), name="aol_accounts_platform_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.platform})"


Action._meta.pk.register_lookup(InArray)  # the fenced id lists (services/lease.py, services/claim.py)


class AccountRateLimit(models.Model):
    """A platform rate-limited one account (HTTP 429, rate-limit headers): its REAL actions wait until ``reset_at``.

    Written when an attempt raises AccountRateLimited; read by every REAL claim, which defers an action
    of a held account instead of running it, so that actions enqueued after the 429 wait too. A row
    whose ``reset_at`` has passed holds nothing (it is overwritten by the next 429 of that account).
    """

    #: The adapters' exclusive key of the account's actions (``ActionAdapter.exclusive_key``), e.g.
    #: ``account:brand-main`` for POST_SOCIAL, ``webhook:crm:tenant-1`` for WEBHOOK.
    key = models.CharField(max_length=255, unique=True)
    account = models.CharField(max_length=255, help_text="The account's name, as payloads give it")
    action_type = models.CharField(max_length=64, help_text="The type of the action that met the limit")
    reset_at = models.DateTimeField(help_text="The platform's reset time: the account's actions wait until then")
    note = models.CharField(max_length=500, help_text="What the platform said, shown on the deferred actions")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "aol_account_rate_limits"
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key} held until {self.reset_at:%Y-%m-%d %H:%M:%S} UTC"
