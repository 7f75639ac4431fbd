"""Moving PROOF artifacts between the two stores (``manage.py aol_artifacts move``).

The records decide what moves: every execution-log row and every action (``approval_artifact_ref``)
whose reference names the other store, walked in id order in short transactions. For each
reference the bytes are read from the old store and checked against the SHA-256 the row logged;
they are written to the new store (the database: an ``aol_artifacts`` row; files: the name the
artifact was first written under, never over other bytes), and the rows' references are rewritten
in the same transaction as that insert. A reference whose bytes are missing or no longer match is
left as it is and counted.

Nothing is deleted until a whole pass has moved every reference it could: then the old copies that
no row refers to any more, and whose bytes the new store holds, are deleted (files to the database:
those files; the database to files: those rows, unless written again since the run began). An
interrupted run has deleted nothing it still needs; running it again goes on where it stopped and
finds the references already moved. The same run twice does nothing the second time.
"""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone

from orchestration.adapters.artifacts import TEMP_PREFIX, artifact_ensure, artifact_path, sha256_bytes
from orchestration.adapters.store import (
    DATABASE,
    DB_PREFIX,
    FILES,
    PendingArtifact,
    artifact_rows_write,
    content_type_for,
    db_ref,
    ref_in_database,
    ref_sha256,
)
from orchestration.conf import aol
from orchestration.exceptions import AOLError, ArtifactConflict, ArtifactNotFound, ArtifactStoreUnavailable
from orchestration.models import Action, Artifact, ExecutionLog
from orchestration.services.retention import walk_files

logger = logging.getLogger("orchestration")

#: Rows read per transaction.
MOVE_BATCH_SIZE = 500


@dataclass
class MoveReport:
    to: str
    dry_run: bool
    #: Distinct artifacts written to the new store (or, dry run, that would be).
    moved: int = 0
    #: Log and action rows whose reference was rewritten.
    refs_updated: int = 0
    #: Artifacts the new store held already (only the references were rewritten).
    already_there: int = 0
    #: References left as they are: the bytes are gone, or do not hash to the logged SHA-256, or
    #: (to files) their name holds other bytes.
    missing: set[str] = field(default_factory=set)
    mismatched: set[str] = field(default_factory=set)
    conflicts: set[str] = field(default_factory=set)
    #: Old copies deleted after the pass (files, or aol_artifacts rows).
    sources_deleted: int = 0
    seconds: float = 0.0

    @property
    def skipped(self) -> int:
        return len(self.missing) + len(self.mismatched) + len(self.conflicts)

    def summary(self) -> str:
        where = "the database" if self.to == DATABASE else "files"
        if self.dry_run:
            return (
                f"{self.moved} artifacts would be moved to {where} ({self.refs_updated} references); "
                f"{self.already_there} already there; {self.skipped} would be left (missing or changed)."
            )
        source = "files" if self.to == DATABASE else "database rows"
        return (
            f"{self.moved} artifacts moved to {where}, {self.refs_updated} references updated; "
            f"{self.already_there} already there; {len(self.missing)} missing, {len(self.mismatched)} changed, "
            f"{len(self.conflicts)} name conflicts left as they were; {self.sources_deleted} old {source} deleted."
        )


def _refs_to_move(model: type[Model], column: str, to: str) -> QuerySet:
    rows = model._default_manager.exclude(**{column: ""})
    if to == DATABASE:
        return rows.exclude(**{f"{column}__startswith": DB_PREFIX})
    return rows.filter(**{f"{column}__startswith": DB_PREFIX})


def _read_source(ref: str) -> bytes:
    if ref_in_database(ref):
        content = Artifact.objects.filter(sha256=ref_sha256(ref)).values_list("content", flat=True).first()
        if content is None:
            raise ArtifactNotFound(ref)
        return bytes(content)
    try:
        return artifact_path(ref).read_bytes()
    except (OSError, ValueError):
        raise ArtifactNotFound(ref) from None


def _file_time(ref: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(artifact_path(ref).stat().st_mtime, tz=UTC)
    except (OSError, ValueError):
        return None


def artifacts_move(*, to: str, dry_run: bool = False, batch_size: int = MOVE_BATCH_SIZE) -> MoveReport:
    """Move every referenced artifact to the store ``to`` ("files" or "database"); see the module docstring."""
    if to not in (FILES, DATABASE):
        raise ValueError(f"the target store must be {FILES} or {DATABASE}, not {to!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"the batch size must be a whole number greater than zero, not {batch_size!r}")
    started, began_at = time.monotonic(), timezone.now()
    report = MoveReport(to=to, dry_run=dry_run)
    #: old reference → new reference, for the references this run moved (or found moved).
    done: dict[str, str] = {}
    for model, column, sha_column in (
        (ExecutionLog, "artifact_ref", "artifact_sha256"),
        (Action, "approval_artifact_ref", "approval_sha256"),
    ):
        for batch in _batches(_refs_to_move(model, column, to), column, sha_column, batch_size):
            _move_batch(model=model, column=column, batch=batch, to=to, dry_run=dry_run, done=done, report=report)
    if not dry_run:
        report.sources_deleted = _delete_sources(to=to, done=done, report=report, began_at=began_at)
    report.seconds = time.monotonic() - started
    logger.info(
        "artifacts move to=%s dry_run=%s moved=%s refs_updated=%s already_there=%s missing=%s mismatched=%s "
        "conflicts=%s sources_deleted=%s",
        to,
        dry_run,
        report.moved,
        report.refs_updated,
        report.already_there,
        len(report.missing),
        len(report.mismatched),
        len(report.conflicts),
        report.sources_deleted,
    )
    return report


def _batches(rows: QuerySet, column: str, sha_column: str, size: int) -> Iterator[list[tuple[int, str, str]]]:
    """(id, reference, logged sha256) of ``rows`` in id order, ``size`` at a time, each batch read afresh."""
    after = 0
    while True:
        batch = list(rows.filter(pk__gt=after).order_by("pk").values_list("pk", column, sha_column)[:size])
        if batch:
            yield batch
        if len(batch) < size:
            return
        after = batch[-1][0]


def _move_batch(
    *,
    model: type[Model],
    column: str,
    batch: list[tuple[int, str, str]],
    to: str,
    dry_run: bool,
    done: dict[str, str],
    report: MoveReport,
) -> None:
    by_ref: dict[tuple[str, str], list[int]] = {}
    for pk, ref, sha256 in batch:
        by_ref.setdefault((ref, sha256), []).append(pk)
    with transaction.atomic():
        for (ref, sha256), pks in by_ref.items():
            new_ref = _move_one(ref=ref, sha256=sha256, to=to, dry_run=dry_run, done=done, report=report)
            if not new_ref:
                continue
            if dry_run:
                report.refs_updated += len(pks)
                continue
            # Only rows that still name the old reference: one changed meanwhile is left to the next run.
            report.refs_updated += model._default_manager.filter(pk__in=pks, **{column: ref}).update(
                **{column: new_ref}
            )


def _move_one(*, ref: str, sha256: str, to: str, dry_run: bool, done: dict[str, str], report: MoveReport) -> str:
    """Copy one artifact into ``to`` (inside the caller's transaction); its new reference, or '' if left."""
    if ref in done:
        return done[ref]
    if ref in report.missing or ref in report.mismatched or ref in report.conflicts:
        return ""
    if to == DATABASE and sha256 and Artifact.objects.filter(sha256=sha256).exists():
        report.already_there += 1
        done[ref] = db_ref(sha256)
        return done[ref]
    try:
        content = _read_source(ref)
    except ArtifactNotFound:
        report.missing.add(ref)
        logger.warning("artifacts move: ref=%s is missing; left as it is", ref)
        return ""
    if sha256 and sha256_bytes(content) != sha256:
        report.mismatched.add(ref)
        logger.warning("artifacts move: ref=%s no longer hashes to the logged sha256=%s; left as it is", ref, sha256)
        return ""
    digest = sha256 or sha256_bytes(content)
    if to == DATABASE:
        new_ref = db_ref(digest)
        if not dry_run:
            when = _file_time(ref) or timezone.now()
            artifact_rows_write(
                pending=[PendingArtifact(sha256=digest, content=content, content_type=content_type_for(ref), name=ref)],
                written_at=when,
            )
        report.moved += 1
    else:
        row = Artifact.objects.filter(sha256=digest).values_list("name", flat=True).first()
        new_ref = row or f"moved/{digest}.bin"
        if not dry_run:
            try:
                _, already = artifact_ensure(ref=new_ref, content=content)
            except ArtifactConflict:
                report.conflicts.add(ref)
                return ""
            except ArtifactStoreUnavailable as exc:
                raise AOLError(f"cannot move artifacts to files: {exc}") from None
            report.already_there += int(already)
            report.moved += int(not already)
        else:
            report.moved += 1
    done[ref] = new_ref
    return new_ref


def _delete_sources(*, to: str, done: dict[str, str], report: MoveReport, began_at: datetime) -> int:
    """After a whole pass: delete the old copies no row refers to any more and the new store holds."""
    if to == DATABASE:
        return _delete_moved_files(report=report, began_at=began_at)
    left = {ref_sha256(ref) for ref in (report.missing | report.mismatched | report.conflicts) if ref_in_database(ref)}
    moved = sorted({ref_sha256(ref) for ref in done if ref_in_database(ref)} - left)
    deleted = 0
    for start in range(0, len(moved), MOVE_BATCH_SIZE):
        chunk = moved[start : start + MOVE_BATCH_SIZE]
        refs = [db_ref(digest) for digest in chunk]
        # Named again since the pass (an approval logged meanwhile) or written again since the run
        # began (a daemon still on the database store): kept.
        named = set(ExecutionLog.objects.filter(artifact_ref__in=refs).values_list("artifact_ref", flat=True))
        named.update(
            Action.objects.filter(approval_artifact_ref__in=refs).values_list("approval_artifact_ref", flat=True)
        )
        unnamed = [digest for digest in chunk if db_ref(digest) not in named]
        with transaction.atomic():
            count, _ = Artifact.objects.filter(sha256__in=unnamed, last_written_at__lt=began_at).delete()
        deleted += count
    return deleted


def _delete_moved_files(*, report: MoveReport, began_at: datetime) -> int:
    """Files under AOL_ARTIFACTS_DIR that no row names and whose bytes aol_artifacts holds, older than the run."""
    root = aol.artifacts_dir
    if not root.is_dir():
        return 0
    still_named = set(
        ExecutionLog.objects.exclude(artifact_ref="")
        .exclude(artifact_ref__startswith=DB_PREFIX)
        .values_list("artifact_ref", flat=True)
        .distinct()
    )
    still_named.update(
        Action.objects.exclude(approval_artifact_ref="")
        .exclude(approval_artifact_ref__startswith=DB_PREFIX)
        .values_list("approval_artifact_ref", flat=True)
    )
    limit = began_at.timestamp()
    candidates: dict[str, list] = {}
    for path in walk_files(root):
        if path.name.startswith(TEMP_PREFIX) or path.relative_to(root).as_posix() in still_named:
            continue
        try:
            if path.stat().st_mtime >= limit:
                continue
            candidates.setdefault(sha256_bytes(path.read_bytes()), []).append(path)
        except OSError:
            continue
    deleted = 0
    digests = sorted(candidates)
    for start in range(0, len(digests), MOVE_BATCH_SIZE):
        chunk = digests[start : start + MOVE_BATCH_SIZE]
        for digest in Artifact.objects.filter(sha256__in=chunk).values_list("sha256", flat=True):
            for path in candidates[digest]:
                try:
                    path.unlink()
                    deleted += 1
                except OSError as exc:
                    logger.warning("artifacts move could not delete file=%s: %s", path, exc)
    return deleted
