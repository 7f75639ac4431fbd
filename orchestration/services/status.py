"""One snapshot of the AOL's state, shared by ``aol_status``, the status view and its JSON."""

from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models
from django.db.models import Count
from django.utils import timezone

from llm.outcomes import llm_status
from orchestration.adapters import adapters_all
from orchestration.adapters.store import artifact_store_probe_detail
from orchestration.conf import action_type_settings, aol, approval_required_types
from orchestration.dbclock import DbNow
from orchestration.dburl import database_url_masked
from orchestration.models import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    Action,
    ActionStatus,
    ActionTypePause,
    AuditEntry,
    ExecutionLog,
    Schedule,
    TickLedger,
    TickStatus,
)
from orchestration.services.control import control_flags_get
from orchestration.services.lease import LeaseHealth, lease_health
from orchestration.services.retention import storage_sizes
from orchestration.services.sql import status_statistics, table_statistics

#: How much history the status view shows.
RECENT_LOGS = 10
RECENT_OPERATOR_ACTIONS = 10
RECENT_DLQ = 20
RECENT_SCHEDULES = 20
DURATION_CHART_TICKS = 50
DEPTH_CHART_WINDOW = timedelta(hours=1)
DEPTH_CHART_MAX_TICKS = 720  # an hour of 5-second ticks; faster daemons show a shorter window
DEPTH_CHART_POINTS = 120

#: On PostgreSQL, a finished status (TERMINAL_STATUSES) with at least this many rows by the planner's
#: statistics is shown as an estimate instead of being counted on every refresh. Open statuses are
#: always counted exactly (few rows: an index-only scan of aol_actions_status_idx).
EXACT_COUNT_LIMIT = 100_000
#: Estimates are rounded to this many significant figures, so that they never look counted.
ESTIMATE_FIGURES = 3

#: The reason a BLOCKED tick gives: the artifact store cannot be written (full, read-only, missing).
BLOCKED_ARTIFACT_STORE = "artifact_store"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status_snapshot(*, detail: bool = False) -> dict[str, Any]:
    """Flags, lease, last tick and queue counts, as JSON-ready values (no secrets).

    With ``detail`` (the status view and its JSON endpoint), also the recent execution logs and
    operator actions, the newest DLQ actions, the LLM status, the adapters' REAL support and the
    chart series.
    """
    flags = control_flags_get()
    lease = lease_health()
    expires_in = lease.expires_in_seconds
    last_tick = TickLedger.objects.annotate(db_now=DbNow()).order_by("-started_at", "-id").first()
    counts, estimated = action_status_counts()
    snapshot = {
        "flags": {
            "paused": flags.paused,
            "killed": flags.killed,
            "proof_mode": flags.proof_mode,
            **mode_state(proof_flag=flags.proof_mode, lease=lease),
            "updated_at": _iso(flags.updated_at),
            "updated_by": flags.updated_by,
        },
        "lease": {
            "holder": lease.holder,
            "last_owner": lease.last_owner,
            "token": lease.token,
            "expires_at": _iso(lease.expires_at),
            "expires_in_seconds": round(expires_in, 1) if expires_in is not None else None,
            "state": lease.state,
            "label": lease_label(state=lease.state, killed=flags.killed, paused=flags.paused),
        },
        "daemon_hint": daemon_hint(killed=flags.killed, lease=lease),
        "last_tick": None
        if last_tick is None
        else {
            "id": last_tick.pk,
            "status": last_tick.status,
            "started_at": _iso(last_tick.started_at),
            "finished_at": _iso(last_tick.finished_at),
            "duration_seconds": round(last_tick.duration_seconds, 3),
            "actions_attempted": last_tick.actions_attempted,
            "actions_succeeded": last_tick.actions_succeeded,
            "owner": last_tick.owner,
            "notes": last_tick.notes,
        },
        "environment": environment_state(last_tick=last_tick),
        "counts": counts,
        # The statuses whose figure is an estimate, and the sentence saying so (empty when all are counted).
        "counts_estimated": estimated,
        "counts_note": _counts_note(estimated),
        "paused_types": _paused_types(),
    }
    if detail:
        snapshot.update(_detail(last_tick))
        snapshot.update(_flow_detail())
    return snapshot


#: What to run when no daemon holds the lease.
START_DAEMON_HINT = (
    "start one: `make run` (the console and a daemon together), or `python manage.py run_aol_daemon` "
    "beside a running console"
)


def mode_state(*, proof_flag: bool, lease: LeaseHealth) -> dict[str, Any]:
    """The mode requested (the flag) and the one the running daemon applies, as the lease row publishes it.

    ``mode`` is what the banner shows: the applied mode while a daemon holds the lease, else the mode a
    daemon started now would apply with this process's settings. ``mode_note`` says why they differ.
    """
    requested = "PROOF" if proof_flag else "REAL"
    forced_here = bool(aol.proof_mode)
    if lease.held:
        applied: str | None = "PROOF" if (proof_flag or lease.proof_forced_by) else "REAL"
        mode = applied
        if requested == "REAL" and lease.proof_forced_by:
            note = (
                f"REAL requested; the running daemon is forced to PROOF by {lease.proof_forced_by}. "
                "Restart it without that for REAL to take effect."
            )
        else:
            note = ""
    else:
        applied = None
        mode = "PROOF" if (proof_flag or forced_here) else "REAL"
        note = f"{requested} requested; no daemon is running, so nothing runs in either mode."
        if requested == "REAL" and forced_here:
            note += " AOL_PROOF_MODE=1 here: a daemon started with these settings would be forced to PROOF."
    return {
        "mode": mode,
        "requested_mode": requested,
        "applied_mode": applied,
        "proof_forced_by": lease.proof_forced_by,
        "proof_forced_by_settings": forced_here,
        # Shown as "(forced by …)" beside a PROOF banner: the running daemon's reason, else this process's.
        "mode_forced_by": lease.proof_forced_by if lease.held else ("AOL_PROOF_MODE=1" if forced_here else ""),
        "mode_note": note,
    }


def lease_label(*, state: str, killed: bool, paused: bool) -> str:
    """What the lease light means now: a live daemon that is killed or paused is not "running" anything."""
    if state == "red":
        return "no daemon running"
    if state == "amber":
        return "lease about to expire"
    if killed:
        return "alive, killed: nothing runs until Revive"
    if paused:
        return "alive, paused: nothing new starts"
    return "running"


def daemon_hint(*, killed: bool, lease: LeaseHealth) -> str:
    """What an operator needs to know, or do, about the daemon: '' while one simply runs."""
    if lease.held:
        if killed:
            return (
                f"Killed: the daemon {lease.holder} runs nothing and waits for a revive (Revive resumes it "
                "within a second)."
            )
        return ""
    if killed:
        return f"Killed, and no daemon is running. Revive, then {START_DAEMON_HINT}."
    return f"No daemon is running: {START_DAEMON_HINT}. Actions wait in the queue until then."


def environment_state(*, last_tick: TickLedger | None) -> dict[str, Any]:
    """Whether an environment failure pauses the daemon's claiming, as the newest tick says, and since when.

    Only an unusable artifact store shows here: a daemon that cannot reach the database cannot write
    that either (its log says so while it lasts, and the ledger gets one FAIL row when it ends).
    """
    if last_tick is None or last_tick.status != TickStatus.BLOCKED:
        return {"blocked": False, "reason": "", "detail": "", "since": None}
    earlier = TickLedger.objects.filter(status=TickStatus.BLOCKED, started_at__lte=last_tick.started_at)
    unblocked = (
        TickLedger.objects.filter(started_at__lt=last_tick.started_at)
        .exclude(status=TickStatus.BLOCKED)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    if unblocked is not None:
        earlier = earlier.filter(started_at__gt=unblocked)
    since = earlier.order_by("started_at").values_list("started_at", flat=True).first()
    return {"blocked": True, "reason": BLOCKED_ARTIFACT_STORE, "detail": last_tick.notes, "since": _iso(since)}


def action_status_counts() -> tuple[dict[str, int], list[str]]:
    """Actions per status, and the statuses whose figure is an estimate (none on SQLite).

    Counting every row per refresh made the status view cost ~200 ms at a million actions, nearly
    all of it SUCCESS rows. Open statuses are counted exactly, always; so is a finished status the
    statistics put below EXACT_COUNT_LIMIT rows (cheap through the status index). Larger finished
    statuses are PostgreSQL's estimate: the table's current size times the status's frequency in
    the last ANALYZE (autovacuum re-analyses after about 10 % of the rows change). A table that was
    never analysed has no statistics and is counted exactly.
    """
    counts = {status: 0 for status in ActionStatus.values}
    estimates = {
        status: rows
        for status, rows in _status_estimates().items()
        if status in TERMINAL_STATUSES and rows >= EXACT_COUNT_LIMIT
    }
    counted = Action.objects.order_by()
    if estimates:
        counted = counted.filter(status__in=[status for status in ActionStatus.values if status not in estimates])
    # COUNT(*), not COUNT(id): the status index alone answers it (an index-only scan).
    counts.update(counted.values_list("status").annotate(n=Count("*")))
    counts.update({status: estimate_round(rows) for status, rows in estimates.items()})
    return counts, sorted(estimates)


def _status_estimates() -> dict[str, int]:
    """Rows per status by PostgreSQL's planner statistics; empty on SQLite or before the first ANALYZE."""
    if connection.vendor != "postgresql":
        return {}
    row = status_statistics(table=Action._meta.db_table)
    if row is None:
        return {}
    reltuples, relpages, pages, values, frequencies = row
    # Never analysed (reltuples is -1), or no statistics for the column.
    if reltuples < 0 or not values or not frequencies:
        return {}

    rows = _rows_now(reltuples, relpages, pages)
    return {value: int(rows * frequency) for value, frequency in zip(values, frequencies, strict=True)}


def _rows_now(reltuples: float, relpages: int, pages: int) -> float:
    """The last ANALYZE's row count scaled to the table's current pages, as the planner scales it."""
    return reltuples * pages / relpages if relpages > 0 else reltuples


def table_rows_estimate(*, model: type[models.Model]) -> int | None:
    """PostgreSQL's estimate of a table's rows, rounded; None on SQLite or before the first ANALYZE.

    ``reltuples`` scaled to the table's current pages, as the planner does, so it follows inserts
    made since the last ANALYZE. The admin's paginator shows it instead of counting a big table.
    """
    if connection.vendor != "postgresql":
        return None
    row = table_statistics(table=model._meta.db_table)
    if row is None or row[0] < 0:  # no such table, or never analysed (reltuples is -1)
        return None
    return estimate_round(int(_rows_now(*row)))


def estimate_round(rows: int) -> int:
    """Round an estimate to ESTIMATE_FIGURES significant figures (889,137 → 889,000)."""
    return round(rows, ESTIMATE_FIGURES - len(str(rows))) if rows > 0 else 0


def _counts_note(estimated: list[str]) -> str:
    if not estimated:
        return ""
    return (
        f"Estimated, not counted: {', '.join(estimated)}. The figure comes from PostgreSQL's table statistics "
        f"(as of the last ANALYZE), rounded to {ESTIMATE_FIGURES} figures: finished statuses above "
        f"{EXACT_COUNT_LIMIT:,} rows are not counted on every refresh. Open statuses are always counted exactly."
    )


# --- Flow control (docs/flow-control.md) -------------------------------------------------------------------

RECENT_APPROVALS = 50
RECENT_DEFERRED = 20
RECENT_CANCEL_REQUESTED = 20


def _paused_types() -> list[dict[str, Any]]:
    return [
        {
            "action_type": pause.action_type,
            "paused_by": pause.paused_by,
            "paused_at": _iso(pause.paused_at),
            "reason": pause.reason,
        }
        for pause in ActionTypePause.objects.order_by("paused_at", "action_type")
    ]


def _flow_detail() -> dict[str, Any]:
    """Approvals waiting, rate-limit deferrals, cancel requests and the flow-control settings in force."""
    from orchestration.services.rate_limits import rate_limits_in_force

    return {
        "approvals": [
            {
                "id": action.pk,
                "action_type": action.action_type,
                "idempotency_key": action.idempotency_key,
                "priority": action.priority,
                "artifact_ref": action.approval_artifact_ref,
                "artifact_sha256": action.approval_sha256,
                "updated_at": _iso(action.updated_at),
            }
            for action in Action.objects.awaiting_approval().order_by("-priority", "updated_at", "id")[
                :RECENT_APPROVALS
            ]
        ],
        "deferred": [
            {
                "id": action.pk,
                "action_type": action.action_type,
                "rate_key": action.rate_key,
                "priority": action.priority,
                "not_before": _iso(action.not_before),
                "note": action.deferred_note,
            }
            for action in Action.objects.deferred()[:RECENT_DEFERRED]
        ],
        "cancel_requested": [
            {"id": action.pk, "action_type": action.action_type, "claimed_by": action.claimed_by}
            for action in Action.objects.running()
            .filter(cancel_requested=True)
            .order_by("id")[:RECENT_CANCEL_REQUESTED]
        ],
        "rate_limits": [limit.as_dict() for limit in rate_limits_in_force()],
        # Only types that exist: the default list names SEND_EMAIL even where it is not installed.
        "approval_required_types": sorted(approval_required_types() & set(adapters_all())),
        "type_settings": [
            {
                "action_type": name,
                "max_attempts": settings.max_attempts,
                "backoff": settings.backoff,
                "backoff_seconds": settings.backoff_seconds,
                "backoff_max_seconds": settings.backoff_max_seconds,
                "jitter": settings.jitter,
                "timeout_seconds": settings.timeout_seconds,
                "orphan_policy": settings.orphan_policy,
            }
            for name, settings in ((name, action_type_settings(name)) for name in sorted(adapters_all()))
        ],
    }


def _detail(last_tick: TickLedger | None) -> dict[str, Any]:
    # Tick times are the database's clock, so their age is measured on it too: the daemon's host
    # and the console's may disagree.
    # db_now comes from .annotate(), which the stubs cannot follow through a "-> TickLedger" signature.
    now = last_tick.db_now if last_tick else timezone.now()  # type: ignore[attr-defined]
    return {
        "generated_at": now.isoformat(),
        "database": database_url_masked(),
        "last_tick_age_seconds": round((now - last_tick.finished_at).total_seconds(), 1) if last_tick else None,
        "llm": llm_status(),
        "adapters": [
            {
                "action_type": adapter.action_type,
                "description": adapter.description,
                # False also when the integration exists but is not configured (SEND_EMAIL without EMAIL_HOST).
                "supports_real": not problem,
                "real_setup_hint": problem,
            }
            for _, adapter in sorted(adapters_all().items())
            for problem in [adapter.real_problem()]
        ],
        "recent_logs": [
            {
                "id": log.pk,
                "ts": _iso(log.ts),
                "level": log.level,
                "action_id": log.action_id,
                "actor": log.actor,
                "message": log.message,
                "artifact_ref": log.artifact_ref,
                "artifact_sha256": log.artifact_sha256,
            }
            for log in ExecutionLog.objects.order_by("-id")[:RECENT_LOGS]
        ],
        "operator_actions": [
            {
                "id": entry.pk,
                "ts": _iso(entry.ts),
                "actor": entry.actor,
                "verb": entry.verb,
                "outcome": entry.outcome,
                "target": entry.target,
                "before": entry.before,
                "after": entry.after,
                "reason": entry.reason,
            }
            for entry in AuditEntry.objects.order_by("-id")[:RECENT_OPERATOR_ACTIONS]
        ],
        "attention": [
            {
                "id": action.pk,
                "status": action.status,
                "action_type": action.action_type,
                "attempts": action.attempts,
                "updated_at": _iso(action.updated_at),
                "last_error": action.last_error[:200],
            }
            for action in Action.objects.needing_attention().order_by("-id")[:RECENT_DLQ]
        ],
        # Table and artifact sizes; measured at most once a minute per process.
        "storage": storage_sizes(),
        # Probed on every refresh (a few KiB written and fsynced), unlike the sizes: a full disk shows at once.
        "artifacts_dir": _artifacts_dir(),
        "schedules": _schedules(limit=RECENT_SCHEDULES),
        "charts": {
            "tick_durations": [
                {
                    "id": pk,
                    "started_at": _iso(started),
                    "seconds": round((finished - started).total_seconds(), 3),
                    "status": status,
                }
                for pk, started, finished, status in _recent_ticks()
            ],
            "queue_depth_statuses": [str(status) for status in OPEN_STATUSES],
            "queue_depth": _depth_series(since=now - DEPTH_CHART_WINDOW),
        },
    }


def _schedules(*, limit: int | None = None) -> list[dict[str, Any]]:
    """Schedules (the first ``limit``), enabled ones first, soonest next firing first."""
    schedules = Schedule.objects.order_by("-enabled", "next_run_at", "name")
    return [
        {
            "id": schedule.pk,
            "name": schedule.name,
            "action_type": schedule.action_type,
            "rule": schedule.rule,
            "enabled": schedule.enabled,
            "catch_up": schedule.catch_up,
            "last_period_at": _iso(schedule.last_period_at),
            "next_run_at": _iso(schedule.next_run_at),
        }
        for schedule in (schedules[:limit] if limit is not None else schedules)
    ]


def flow_snapshot() -> dict[str, Any]:
    """The Schedules and limits view's part of the snapshot: schedules, paused types, rate limits, deferrals."""
    return {"paused_types": _paused_types(), "schedules": _schedules(), **_flow_detail()}


def _artifacts_dir() -> dict[str, Any]:
    probe = artifact_store_probe_detail()
    return {
        "store": probe.store,
        "path": probe.path,
        "ok": probe.ok,
        "problem": probe.problem,
        "free_bytes": probe.free_bytes,
        "min_free_bytes": probe.min_free_bytes,
        "summary": probe.summary,
    }


def _recent_ticks() -> list[tuple]:
    """The last DURATION_CHART_TICKS ticks, oldest first."""
    rows = TickLedger.objects.order_by("-started_at", "-id").values_list("pk", "started_at", "finished_at", "status")
    return list(rows[:DURATION_CHART_TICKS])[::-1]


def _depth_series(*, since: datetime) -> list[dict[str, Any]]:
    """Open actions per status at the end of recent ticks, thinned to at most DEPTH_CHART_POINTS."""
    rows = list(
        TickLedger.objects.filter(started_at__gte=since)
        .order_by("-started_at", "-id")
        .values_list("finished_at", "queue_depth")[:DEPTH_CHART_MAX_TICKS]
    )
    rows = [(ts, depth) for ts, depth in reversed(rows) if depth]
    step = max(1, -(-len(rows) // DEPTH_CHART_POINTS))
    picked = rows[::step]
    if rows and picked[-1] is not rows[-1]:
        picked.append(rows[-1])  # always end on the newest sample
    return [{"t": _iso(ts), "depth": depth} for ts, depth in picked]
