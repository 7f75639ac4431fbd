"""The one interface to PROOF artifacts, over its two stores.

- ``files`` (the default): files under AOL_ARTIFACTS_DIR, written by ``artifacts.artifact_ensure``
  (temporary file, fsync, hard link that never replaces a name) before the SUCCESS that records
  them. The reference is the path under the directory: ``post_social/<created>_<id>_<key>.txt``.
- ``database``: rows of ``aol_artifacts`` keyed by SHA-256. ``artifact_put`` writes nothing: it
  returns the bytes as ``pending``, and the service that records the action's SUCCESS (or its wait
  for approval) inserts them in the same transaction, so the record and its artifact can never
  disagree and every host that reaches the database reads it. The reference is ``db:sha256:<hex>``.

The setting decides where new artifacts go; a reference says where an existing one is, so both
kinds can coexist after a switch (``manage.py aol_artifacts move`` moves the old ones).
"""

import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from orchestration.adapters.artifacts import (
    ArtifactsProbe,
    artifact_ensure,
    artifact_path,
    artifacts_dir_probe_detail,
    sha256_bytes,
)
from orchestration.conf import aol
from orchestration.exceptions import ArtifactNotFound, ArtifactStoreMisconfigured

FILES = "files"
DATABASE = "database"
STORES = (FILES, DATABASE)
#: How a reference to the database store begins; the rest is the SHA-256 in hex.
DB_PREFIX = "db:sha256:"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class PendingArtifact:
    """Bytes the database store writes in the transaction that records the action's outcome."""

    sha256: str
    content: bytes
    content_type: str
    name: str

    @property
    def ref(self) -> str:
        return db_ref(self.sha256)


@dataclass(frozen=True)
class StoredArtifact:
    """What ``artifact_put`` did: the reference to log, its SHA-256, and bytes still to be written."""

    ref: str
    sha256: str
    #: The files store found the same bytes under the name already (an earlier attempt wrote them).
    already_there: bool = False
    #: The database store's bytes, for the success (or approval) transaction; None when stored already.
    pending: PendingArtifact | None = None


def artifact_store_problem(value: object = None) -> str:
    """'' when AOL_ARTIFACT_STORE names a store; else what is wrong (the system check E023 says it)."""
    value = aol.artifact_store if value is None else value
    if value in STORES:
        return ""
    return f"AOL_ARTIFACT_STORE={value!r} is not a store; use one of {', '.join(STORES)}."


def artifact_store_current() -> str:
    """The store new artifacts go to: "files" or "database" (AOL_ARTIFACT_STORE)."""
    problem = artifact_store_problem()
    if problem:
        raise ArtifactStoreMisconfigured(problem)
    return str(aol.artifact_store)


def db_ref(sha256: str) -> str:
    return f"{DB_PREFIX}{sha256}"


def ref_in_database(ref: str) -> bool:
    """Does ``ref`` name an artifact of the database store?"""
    return ref.startswith(DB_PREFIX)


def ref_sha256(ref: str) -> str:
    """The SHA-256 a database reference names; ArtifactNotFound when it is not one."""
    digest = ref[len(DB_PREFIX) :] if ref_in_database(ref) else ""
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise ArtifactNotFound(f"artifact reference {ref!r} is not {DB_PREFIX}<64 hex digits>")
    return digest


def content_type_for(name: str) -> str:
    """The media type of an artifact from its name's suffix (text/plain when unknown)."""
    if name.endswith(".eml"):
        return "message/rfc822"
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "text/plain"


def artifact_put(*, name: str, content: bytes) -> StoredArtifact:
    """Store ``content`` as the artifact called ``name`` (a files-store path) in the current store.

    Files: written now, once per name (see ``artifact_ensure``; ArtifactConflict if the name holds
    other bytes, ArtifactStoreUnavailable if the directory cannot be written). Database: nothing is
    written yet; the caller's record of the outcome writes ``pending`` with it.
    """
    if artifact_store_current() == FILES:
        sha256, already_there = artifact_ensure(ref=name, content=content)
        return StoredArtifact(ref=name, sha256=sha256, already_there=already_there)
    digest = sha256_bytes(content)
    pending = PendingArtifact(sha256=digest, content=content, content_type=content_type_for(name), name=name)
    return StoredArtifact(ref=pending.ref, sha256=digest, pending=pending)


def artifact_earlier_content(*, name: str) -> bytes | None:
    """The bytes an earlier attempt left as a file called ``name``, or None.

    Only files can be left behind: the database store writes an artifact with its SUCCESS, so an
    attempt that did not record success left nothing there.
    """
    try:
        path = artifact_path(name)
        return path.read_bytes() if path.is_file() else None
    except (OSError, ValueError):
        return None


def artifact_read(*, ref: str) -> bytes:
    """The bytes of the artifact ``ref``, from the store it names; ArtifactNotFound when it is not there."""
    from orchestration.models import Artifact

    if not ref:
        raise ArtifactNotFound("no artifact was recorded")
    if ref_in_database(ref):
        content = Artifact.objects.filter(sha256=ref_sha256(ref)).values_list("content", flat=True).first()
        if content is None:
            raise ArtifactNotFound(f"artifact {ref} is not in the database (aol_artifacts)")
        return bytes(content)
    try:
        return artifact_path(ref).read_bytes()
    except ValueError as exc:
        raise ArtifactNotFound(str(exc)) from None
    except FileNotFoundError:
        raise ArtifactNotFound(f"artifact {ref} is missing from AOL_ARTIFACTS_DIR={aol.artifacts_dir}") from None
    except OSError as exc:
        raise ArtifactNotFound(f"artifact {ref} cannot be read: {exc.strerror or exc}") from None


def artifact_exists(*, ref: str) -> bool:
    from orchestration.models import Artifact

    try:
        if ref_in_database(ref):
            return Artifact.objects.filter(sha256=ref_sha256(ref)).exists()
        return artifact_path(ref).is_file()
    except (ArtifactNotFound, ValueError, OSError):
        return False


def artifact_verify(*, ref: str, sha256: str) -> bool:
    """True when the stored artifact still hashes to ``sha256`` (its bytes are re-hashed, in either store)."""
    try:
        return sha256_bytes(artifact_read(ref=ref)) == sha256
    except ArtifactNotFound:
        return False


def artifact_rows_write(*, pending: Iterable[PendingArtifact | None], written_at: datetime | None = None) -> int:
    """Insert the database store's pending artifacts; call inside the transaction that records their actions.

    Content-addressed: a row with the same key holds the same bytes already, so a conflict only sets
    its ``last_written_at`` again. That UPDATE locks the row until the caller commits, so a
    concurrent ``aol_prune`` (which re-checks the age in its DELETE) waits and then leaves it. Rows
    are written in key order, the order a prune's DELETE locks them in. Returns how many were given.
    """
    from orchestration.models import Artifact

    now = written_at or timezone.now()
    rows = {
        item.sha256: Artifact(
            sha256=item.sha256,
            content=item.content,
            size=len(item.content),
            content_type=item.content_type[:100],
            name=item.name[:500],
            created_at=now,
            last_written_at=now,
        )
        for item in pending
        if item is not None
    }
    if rows:
        Artifact.objects.bulk_create(
            [rows[key] for key in sorted(rows)],
            update_conflicts=True,
            unique_fields=["sha256"],
            update_fields=["last_written_at"],
        )
    return len(rows)


def artifact_store_probe_detail() -> ArtifactsProbe:
    """Can new artifacts be written now? The files store: a real probe write to AOL_ARTIFACTS_DIR
    (``artifacts_dir_probe_detail``). The database store: no probe of its own, its health is the
    database's (which /readyz, check_sentinels and the daemon check anyway)."""
    problem = artifact_store_problem()
    if problem:
        return ArtifactsProbe(path=str(aol.artifacts_dir), problem=problem, kind="misconfigured")
    if aol.artifact_store == DATABASE:
        return ArtifactsProbe(path="aol_artifacts", store=DATABASE)
    return artifacts_dir_probe_detail()


def artifact_store_probe() -> str:
    """'' when new artifacts can be written to the current store now; else one line saying why."""
    return artifact_store_probe_detail().problem
