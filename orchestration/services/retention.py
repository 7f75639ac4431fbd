"""Retention: prune old terminal actions, execution logs, ticks and PROOF artifacts; measure storage.

Pruning deletes in batches, each its own short transaction (select a batch of ids by key order,
then delete exactly those ids with the age and status conditions checked again), so no lock is
held for long: on PostgreSQL only the deleted rows are locked, on SQLite the write lock is held for
one batch and then handed to the daemon. The batch shrinks when one takes more than
``BATCH_TARGET_SECONDS``. The whole run is time-sliced by ``max_seconds``: what is left is deleted
by the next run.

Temporary files (``.tmp-*``) that a crash left between writing an artifact and renaming it into
place are deleted once they are older than ``TEMP_FILE_MAX_AGE_SECONDS``, whatever the artifacts'
retention: no write takes that long, so nothing still in use is touched.

Artifacts of the database store (``aol_artifacts``) are deleted once their ``last_written_at`` is
older than the artifacts' retention, in batches like the rows above, unless an open action still
refers to one (its logs, or the artifact awaiting its approval). The DELETE re-checks the age: a
daemon recording the same bytes again at that moment has set ``last_written_at`` under a row
lock, so the row stays (on PostgreSQL the DELETE waits for that lock, then sees the new time).

Only SUCCESS and FAILED actions are ever deleted. Actions still waiting, running, retrying or in
the DLQ (and any status added later) are never touched, and neither are the execution logs and
artifacts of those actions: they explain an action an operator still has to deal with.
"""

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Q, QuerySet, Sum
from django.utils import timezone

from orchestration.adapters.artifacts import TEMP_PREFIX
from orchestration.adapters.store import DB_PREFIX, ref_in_database
from orchestration.conf import aol
from orchestration.models import Action, ActionStatus, Artifact, ExecutionLog, TickLedger
from orchestration.services.sql import database_bytes, table_rows_capped, table_sizes

logger = logging.getLogger("orchestration")

#: The only statuses pruning deletes.
PRUNABLE_STATUSES = (ActionStatus.SUCCESS, ActionStatus.FAILED)
#: A batch taking longer than this is followed by a batch half its size.
BATCH_TARGET_SECONDS = 0.5
MIN_BATCH_SIZE = 50
#: SQLite: pause between batches so a waiting daemon gets the write lock.
SQLITE_PAUSE_SECONDS = 0.02
#: The artifacts walk stops counting after this many files (the status view must stay quick).
ARTIFACT_SCAN_CAP = 200_000
#: Table row counts stop at this (SQLite, or a PostgreSQL table never analysed).
ROW_COUNT_CAP = 10_000_000
#: A leftover temporary file (``.tmp-*``) older than this is deleted.
TEMP_FILE_MAX_AGE_SECONDS = 3600


@dataclass
class PruneReport:
    dry_run: bool
    cutoffs: dict[str, datetime]
    actions: int = 0
    logs: int = 0
    ticks: int = 0
    artifact_files: int = 0
    artifact_bytes: int = 0
    #: Rows of aol_artifacts (the database store).
    artifact_rows: int = 0
    temp_files: int = 0
    batches: int = 0
    longest_batch_seconds: float = 0.0
    seconds: float = 0.0
    complete: bool = True  # False when the time slice ran out first

    def summary(self) -> str:
        verb = "would be deleted" if self.dry_run else "deleted"
        parts = [
            f"{self.actions} actions",
            f"{self.logs} logs",
            f"{self.ticks} ticks",
            f"{self.artifact_files} artifact files",
        ]
        if self.artifact_rows:
            parts.append(f"{self.artifact_rows} database artifacts")
        if self.temp_files:
            parts.append(f"{self.temp_files} leftover temporary files")
        return f"{', '.join(parts[:-1])} and {parts[-1]} {verb}."


@dataclass
class _Clock:
    deadline: float | None
    started: float = field(default_factory=time.monotonic)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def retention_cutoffs(
    *,
    now: datetime | None = None,
    actions_days: float | None = None,
    logs_days: float | None = None,
    ticks_days: float | None = None,
    artifacts_days: float | None = None,
) -> dict[str, datetime]:
    """The moment before which each kind of record is old enough to prune (settings as defaults)."""
    now = now or timezone.now()
    days = {
        "actions": actions_days if actions_days is not None else aol.retention_actions_days,
        "logs": logs_days if logs_days is not None else aol.retention_logs_days,
        "ticks": ticks_days if ticks_days is not None else aol.retention_ticks_days,
        "artifacts": artifacts_days if artifacts_days is not None else aol.retention_artifacts_days,
    }
    for name, value in days.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"the retention for {name} must be a number of days greater than zero, not {value!r}")
    return {name: now - timedelta(days=value) for name, value in days.items()}


def _open_action_ids() -> QuerySet:
    """Ids of actions that are not prunable (their logs and artifacts are kept)."""
    return Action.objects.exclude(status__in=PRUNABLE_STATUSES).values("pk")


def retention_prune(
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    actions_days: float | None = None,
    logs_days: float | None = None,
    ticks_days: float | None = None,
    artifacts_days: float | None = None,
    batch_size: int | None = None,
    max_seconds: float | None = None,
) -> PruneReport:
    """Delete (or with ``dry_run`` count) what is older than its retention; see the module docstring."""
    cutoffs = retention_cutoffs(
        now=now, actions_days=actions_days, logs_days=logs_days, ticks_days=ticks_days, artifacts_days=artifacts_days
    )
    batch_size = batch_size or aol.prune_batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"the batch size must be a whole number greater than zero, not {batch_size!r}")
    clock = _Clock(deadline=time.monotonic() + max_seconds if max_seconds else None)
    report = PruneReport(dry_run=dry_run, cutoffs=cutoffs)
    # Newer rows always have larger ids (ids grow with time), so each kind is pruned in id order
    # up to the newest id old enough, and every batch starts after the previous one's last id
    # instead of rescanning rows already deleted.
    kinds = [
        (
            "actions",
            Action.objects.filter(status__in=PRUNABLE_STATUSES, updated_at__lt=cutoffs["actions"]),
            Action.objects.filter(created_at__lt=cutoffs["actions"]),
        ),
        (
            "logs",
            ExecutionLog.objects.filter(ts__lt=cutoffs["logs"]).filter(
                Q(action_id__isnull=True) | ~Q(action_id__in=_open_action_ids())
            ),
            ExecutionLog.objects.filter(ts__lt=cutoffs["logs"]),
        ),
        ("ticks", TickLedger.objects.filter(started_at__lt=cutoffs["ticks"]), None),
    ]
    for name, eligible, bound in kinds:
        if clock.expired():
            report.complete = False
            break
        if dry_run:
            setattr(report, name, eligible.count())
            continue
        deleted = _prune_rows(eligible=eligible, bound=bound, batch_size=batch_size, clock=clock, report=report)
        setattr(report, name, deleted)
    if report.complete and not clock.expired():
        temp_cutoff = (now or timezone.now()) - timedelta(seconds=TEMP_FILE_MAX_AGE_SECONDS)
        _prune_artifacts(
            cutoff=cutoffs["artifacts"], temp_cutoff=temp_cutoff, dry_run=dry_run, clock=clock, report=report
        )
        if not clock.expired():
            _prune_artifact_rows(
                cutoff=cutoffs["artifacts"], batch_size=batch_size, dry_run=dry_run, clock=clock, report=report
            )
        else:
            report.complete = False
    elif report.complete:
        report.complete = False
    report.seconds = time.monotonic() - clock.started
    logger.info(
        "prune dry_run=%s actions=%s logs=%s ticks=%s artifact_files=%s artifact_rows=%s temp_files=%s batches=%s "
        "longest_batch=%.3fs complete=%s",
        dry_run,
        report.actions,
        report.logs,
        report.ticks,
        report.artifact_files,
        report.artifact_rows,
        report.temp_files,
        report.batches,
        report.longest_batch_seconds,
        report.complete,
    )
    return report


def _prune_rows(
    *, eligible: QuerySet, bound: QuerySet | None, batch_size: int, clock: _Clock, report: PruneReport
) -> int:
    model = eligible.model
    # The newest id that can be old enough: rows after it are newer than the cutoff.
    source = bound if bound is not None else eligible
    last_id = source.aggregate(last=Max("pk"))["last"]
    if last_id is None:
        return 0
    deleted, after, size = 0, 0, batch_size
    pause = SQLITE_PAUSE_SECONDS if connection.vendor == "sqlite" else 0.0
    while True:
        if clock.expired():
            report.complete = False
            break
        started = time.monotonic()
        with transaction.atomic():
            ids = list(
                eligible.filter(pk__gt=after, pk__lte=last_id).order_by("pk").values_list("pk", flat=True)[:size]
            )
            if ids:
                # The conditions are checked again in the DELETE itself: a row that changed since
                # it was selected (an action requeued by an operator) is left alone.
                count, _ = eligible.filter(pk__in=ids).delete()
                deleted += count
        elapsed = time.monotonic() - started
        report.batches += 1
        report.longest_batch_seconds = max(report.longest_batch_seconds, elapsed)
        if len(ids) < size:
            break
        after = ids[-1]
        if elapsed > BATCH_TARGET_SECONDS and size > MIN_BATCH_SIZE:
            size = max(MIN_BATCH_SIZE, size // 2)
            logger.info("prune table=%s batch took %.2fs; batch size now %s", model._meta.db_table, elapsed, size)
        if pause:
            time.sleep(pause)
    return deleted


def _kept_artifacts() -> set[str]:
    """Artifacts of actions that are not prunable: the logs of open actions point at them."""
    refs = ExecutionLog.objects.filter(action_id__in=_open_action_ids(), artifact_ref__gt="").values_list(
        "artifact_ref", flat=True
    )
    return set(refs)


def _kept_artifact_hashes() -> set[str]:
    """SHA-256s of the database store's artifacts that open actions refer to (their logs, their approval)."""
    refs = set(
        ExecutionLog.objects.filter(action_id__in=_open_action_ids(), artifact_ref__startswith=DB_PREFIX).values_list(
            "artifact_ref", flat=True
        )
    )
    refs.update(
        Action.objects.exclude(status__in=PRUNABLE_STATUSES)
        .filter(approval_artifact_ref__startswith=DB_PREFIX)
        .values_list("approval_artifact_ref", flat=True)
    )
    return {ref[len(DB_PREFIX) :] for ref in refs if ref_in_database(ref)}


def _prune_artifact_rows(
    *, cutoff: datetime, batch_size: int, dry_run: bool, clock: _Clock, report: PruneReport
) -> None:
    """Delete aol_artifacts rows last written before ``cutoff`` that no open action refers to, in batches."""
    old = Artifact.objects.filter(last_written_at__lt=cutoff)
    kept = _kept_artifact_hashes()
    after = ""
    pause = SQLITE_PAUSE_SECONDS if connection.vendor == "sqlite" else 0.0
    while True:
        if clock.expired():
            report.complete = False
            return
        started = time.monotonic()
        with transaction.atomic():
            batch = list(old.filter(sha256__gt=after).order_by("sha256").values_list("sha256", "size")[:batch_size])
            doomed = [(digest, size) for digest, size in batch if digest not in kept]
            if dry_run:
                deleted = len(doomed)
                freed = sum(size for _, size in doomed)
            elif doomed:
                # The age is checked again by the DELETE: a row written again since it was selected stays.
                digests = [digest for digest, _ in doomed]
                freed = sum(old.filter(sha256__in=digests).values_list("size", flat=True))
                deleted, _ = old.filter(sha256__in=digests).delete()
            else:
                deleted, freed = 0, 0
        report.artifact_rows += deleted
        report.artifact_bytes += freed
        elapsed = time.monotonic() - started
        report.batches += 1
        report.longest_batch_seconds = max(report.longest_batch_seconds, elapsed)
        if len(batch) < batch_size:
            return
        after = batch[-1][0]
        if pause:
            time.sleep(pause)


def _prune_artifacts(
    *, cutoff: datetime, temp_cutoff: datetime, dry_run: bool, clock: _Clock, report: PruneReport
) -> None:
    root = aol.artifacts_dir
    if not root.is_dir():
        return
    kept = _kept_artifacts()
    limit, temp_limit = cutoff.timestamp(), temp_cutoff.timestamp()
    for path in walk_files(root):
        if clock.expired():
            report.complete = False
            return
        try:
            stat = path.stat()
        except OSError:
            continue
        temporary = path.name.startswith(TEMP_PREFIX)
        if temporary:
            if stat.st_mtime >= temp_limit:
                continue
        elif stat.st_mtime >= limit or path.relative_to(root).as_posix() in kept:
            continue
        if not dry_run:
            try:
                path.unlink()
            except OSError as exc:
                logger.warning("prune could not delete artifact=%s: %s", path, exc)
                continue
        if temporary:
            report.temp_files += 1
        else:
            report.artifact_files += 1
        report.artifact_bytes += stat.st_size


def walk_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` (symbolic links are not followed)."""
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield Path(entry.path)


# --- Storage sizes (status view, check_sentinels) -------------------------------------------------------


_sizes_lock = threading.Lock()
_sizes_cache: dict[str, Any] = {}
SIZES_CACHE_SECONDS = 60.0


def storage_sizes(*, max_age_seconds: float = SIZES_CACHE_SECONDS) -> dict[str, Any]:
    """Row estimates and sizes of the AOL tables and the artifacts directory, with warning flags.

    Cheap at any size: PostgreSQL's planner statistics (``reltuples``, ``pg_total_relation_size``),
    SQLite counts capped at ROW_COUNT_CAP, and an artifacts walk capped at ARTIFACT_SCAN_CAP
    files. Cached per process for ``max_age_seconds`` (the status page refreshes every few seconds).
    """
    now = time.monotonic()
    with _sizes_lock:
        cached = _sizes_cache.get("value")
        key = (connection.settings_dict.get("NAME"), str(aol.artifacts_dir))
        if cached is not None and _sizes_cache.get("key") == key and now - _sizes_cache["at"] < max_age_seconds:
            return cached
    value = _measure()
    with _sizes_lock:
        _sizes_cache.update(value=value, at=now, key=key)
    return value


def _measure() -> dict[str, Any]:
    tables = _table_sizes()
    files, size, truncated = 0, 0, False
    root = aol.artifacts_dir
    if root.is_dir():
        for path in walk_files(root):
            if files >= ARTIFACT_SCAN_CAP:
                truncated = True
                break
            try:
                size += path.stat().st_size
            except OSError:
                continue
            files += 1
    warn_rows, warn_mb = aol.warn_rows, aol.warn_artifacts_mb
    for table in tables:
        table["warn"] = table["rows"] > warn_rows
    in_database = _artifact_rows_size()
    artifacts_mb = (size + in_database["bytes"]) / (1024 * 1024)
    return {
        "vendor": connection.vendor,
        "tables": tables,
        "database_bytes": database_bytes(),
        "artifacts": {
            "path": str(root),
            "files": files,
            "bytes": size,
            # The database store (aol_artifacts); "mb" and "warn" count both stores.
            "database": in_database,
            "mb": round(artifacts_mb, 1),
            "truncated": truncated,
            "warn": artifacts_mb > warn_mb,
        },
        "warn_rows": warn_rows,
        "warn_artifacts_mb": warn_mb,
        "warn": any(t["warn"] for t in tables) or artifacts_mb > warn_mb,
    }


SIZED_MODELS = (Action, ExecutionLog, TickLedger)


def _artifact_rows_size() -> dict[str, Any]:
    """The database store's rows and bytes: PostgreSQL's planner estimate and size on disk (no scan of the
    artifacts' bytes), SQLite's count and the sum of the sizes."""
    table = Artifact._meta.db_table
    if connection.vendor == "postgresql":
        rows, size = table_sizes(tables=[table]).get(table, (-1, 0))
        if rows >= 0:
            return {"rows": rows, "bytes": size, "estimated": True}
    rows = table_rows_capped(table=table, cap=ROW_COUNT_CAP)
    total = Artifact.objects.aggregate(total=Sum("size"))["total"] or 0
    return {"rows": rows, "bytes": total, "estimated": False}


def _table_sizes() -> list[dict[str, Any]]:
    names = [model._meta.db_table for model in SIZED_MODELS]
    stats: Mapping[str, tuple[int, int | None]] = {}
    if connection.vendor == "postgresql":
        stats = table_sizes(tables=names)
    result = []
    for name in names:
        rows, size = stats.get(name, (-1, None))
        estimated = rows >= 0
        if not estimated:  # SQLite, or a PostgreSQL table never analysed (reltuples is -1)
            rows = table_rows_capped(table=name, cap=ROW_COUNT_CAP)
        result.append({"table": name, "rows": rows, "estimated": estimated, "bytes": size})
    return result
