"""PROOF artifacts: files under AOL_ARTIFACTS_DIR, written atomically, identified by their SHA-256."""

import errno
import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestration.conf import aol
from orchestration.exceptions import ArtifactConflict, ArtifactStoreUnavailable, TransientAdapterError

if TYPE_CHECKING:
    from orchestration.models import Action

logger = logging.getLogger("orchestration")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Prefix of the temporary file an artifact is written to before it gets its name, and of the
#: probe's file; ``aol_prune`` removes those a crash left behind.
TEMP_PREFIX = ".tmp-"
#: What the probe writes: one filesystem block, the room the smallest artifact takes.
PROBE_BYTES = 4096

#: Errors that say the directory itself is unusable (full, read-only, gone, not ours), whatever the
#: action: they pause the daemon instead of spending the action's attempts. Other errors count.
STORE_UNAVAILABLE_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EIO,
        errno.ENODEV,
        errno.ESTALE,
        errno.EMFILE,
        errno.ENFILE,
    }
)


def safe_filename_part(text: str, *, max_length: int = 80) -> str:
    """``text`` made safe for a file name; a short hash keeps distinct keys distinct."""
    cleaned = _UNSAFE.sub("_", text).strip("._") or "key"
    if cleaned == text and len(text) <= max_length:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{cleaned[:max_length]}-{digest}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def artifact_path(ref: str) -> Path:
    """The absolute path of an artifact reference, refusing references that leave the directory."""
    root = aol.artifacts_dir.resolve()
    path = (root / ref).resolve()
    if root not in path.parents:
        raise ValueError(f"artifact reference {ref!r} is outside the artifacts directory")
    return path


def proof_artifact_ref(*, action: "Action", folder: str, suffix: str = ".txt") -> str:
    """The one artifact name of ``action``: its creation time, id and idempotency key, never the attempt.

    Every attempt of an action therefore writes to the same file, which is what lets a re-run
    after a crash find the earlier attempt's artifact instead of writing a second one. The id
    makes the name the action's alone: the key's readable part is not injective (``a b`` and a
    key spelled like its cleaned form meet), and one bulk enqueue gives its rows one creation time.
    """
    if action.pk is None:
        raise ValueError("an action has no artifact name before it is saved")
    stamp = action.created_at.strftime("%Y%m%dT%H%M%S%fZ")
    return f"{folder}/{stamp}_{action.pk}_{safe_filename_part(action.idempotency_key)}{suffix}"


def artifact_write(*, ref: str, content: bytes) -> str:
    """Write ``content`` at ``ref`` and return its SHA-256 (see ``artifact_ensure``)."""
    return artifact_ensure(ref=ref, content=content)[0]


def artifact_ensure(*, ref: str, content: bytes) -> tuple[str, bool]:
    """Make the file at ``ref`` hold ``content``; returns ``(sha256, already_there)``.

    The bytes go to a temporary file in the same directory, are flushed to disk, and are linked
    into place only if the name is free, so a reader (or a crash) never sees half a file and no
    file is ever replaced. If the file is already there with the same SHA-256 (an earlier attempt
    wrote it and crashed before recording success), it is left alone and ``already_there`` is
    True: the effect happens once. If it holds other bytes, ArtifactConflict (permanent) names
    both hashes and the file is kept: it is the record of whatever wrote it.
    """
    digest = sha256_bytes(content)
    path = artifact_path(ref)
    try:
        if path.exists():
            return _existing(ref=ref, path=path, digest=digest), True
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            placed = _place(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        if not placed:
            # Another writer took the name between the check above and the link.
            return _existing(ref=ref, path=path, digest=digest), True
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the new name itself durable before success is recorded
        finally:
            os.close(dir_fd)
    except OSError as exc:
        error = ArtifactStoreUnavailable if exc.errno in STORE_UNAVAILABLE_ERRNOS else TransientAdapterError
        raise error(
            f"could not write artifact {ref} under AOL_ARTIFACTS_DIR={aol.artifacts_dir}: {exc.strerror or exc} "
            "(check that the directory exists, is writable by the daemon and has free space)"
        ) from exc
    return digest, False


def _existing(*, ref: str, path: Path, digest: str) -> str:
    """``digest`` when the file at ``path`` already holds exactly those bytes; else ArtifactConflict."""
    found = sha256_bytes(path.read_bytes())
    if found != digest:
        logger.error("artifact ref=%s holds other content sha256=%s; not replaced (wanted %s)", ref, found, digest)
        raise ArtifactConflict(
            f"artifact {ref} already exists with other content (sha256 {found}, this action's is {digest}); "
            "it is never replaced. Find out what wrote it, move it out of AOL_ARTIFACTS_DIR if it is not "
            "wanted, then retry this action."
        )
    logger.info("artifact ref=%s already present with sha256=%s; not rewritten", ref, digest)
    return digest


def _place(tmp: str, path: Path) -> bool:
    """Give the complete file ``tmp`` the name ``path`` unless the name is taken; False when it is.

    A hard link fails on an existing name, atomically, where a rename would replace it. On a
    filesystem without hard links the rename is used after the existence check of the caller.
    """
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        os.replace(tmp, path)
    return True


def artifact_verify(*, ref: str, sha256: str) -> bool:
    """True when the stored file still hashes to ``sha256``."""
    try:
        return sha256_bytes(artifact_path(ref).read_bytes()) == sha256
    except (OSError, ValueError):
        return False


def artifacts_dir_problem() -> tuple[str, str] | None:
    """None when artifacts can be written to AOL_ARTIFACTS_DIR; else (kind, what is wrong), kind one
    of "missing" (and cannot be created), "not_a_directory" or "not_writable".

    A missing directory is fine when it can be created (artifact_write creates it). Checked with
    ``os.access``, which says yes to root for any mode: a probe write (check_sentinels) is the
    final word.
    """
    path = aol.artifacts_dir
    if path.exists():
        if not path.is_dir():
            return "not_a_directory", f"AOL_ARTIFACTS_DIR={path} is not a directory."
        if not os.access(path, os.W_OK | os.X_OK):
            return "not_writable", f"AOL_ARTIFACTS_DIR={path} is not writable by this process."
        return None
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        return (
            "missing",
            f"AOL_ARTIFACTS_DIR={path} does not exist and cannot be created ({ancestor} is not a writable directory).",
        )
    return None


@dataclass(frozen=True)
class ArtifactsProbe:
    """What one probe of AOL_ARTIFACTS_DIR found: ``problem`` is '' when artifacts can be written."""

    path: str
    problem: str = ""
    #: "unwritable", "low_space" or "misconfigured" when there is a problem, else "".
    kind: str = ""
    #: Bytes an unprivileged process may still write on the directory's filesystem (None: unknown).
    free_bytes: int | None = None
    min_free_bytes: int = 0
    #: The store probed: "files" (this directory) or "database" (aol_artifacts: nothing to probe but the database).
    store: str = "files"

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def public_reason(self) -> str:
        """Why not, for anonymous callers (/readyz): no path, no system message."""
        return {
            "unwritable": "artifacts directory not writable",
            "low_space": "artifacts directory below its minimum free space",
            "misconfigured": "artifacts directory misconfigured",
        }.get(self.kind, "")

    @property
    def space(self) -> str:
        """The free space and the minimum, in words."""
        free = "free space unknown" if self.free_bytes is None else f"{_size(self.free_bytes)} free"
        return f"{free} (minimum {_size(self.min_free_bytes)}, AOL_ARTIFACTS_MIN_FREE_BYTES)"

    @property
    def summary(self) -> str:
        """One line for the status view: the problem, or that it is writable and how much is free."""
        if self.store == "database" and not self.problem:
            return "in the database (AOL_ARTIFACT_STORE=database): written with each SUCCESS, healthy when it is"
        return self.problem or f"writable; {self.space}"


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def artifacts_min_free_bytes_problem() -> str:
    """'' when AOL_ARTIFACTS_MIN_FREE_BYTES is a whole number of bytes, 0 or more; else what is wrong."""
    value = aol.artifacts_min_free_bytes
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"AOL_ARTIFACTS_MIN_FREE_BYTES={value!r} must be a whole number of bytes, 0 or more."
    return ""


def artifacts_dir_probe_detail() -> ArtifactsProbe:
    """Create AOL_ARTIFACTS_DIR if needed, write PROBE_BYTES there (fsync, delete) and measure free space.

    Real bytes, because creating an empty file needs no free block and succeeds on a full disk.
    The free space counts what an unprivileged process may use (``f_bavail``), and falling below
    AOL_ARTIFACTS_MIN_FREE_BYTES is a problem before writes start to fail.
    """
    path = aol.artifacts_dir
    misconfigured = artifacts_min_free_bytes_problem()
    if misconfigured:
        return ArtifactsProbe(path=str(path), problem=misconfigured, kind="misconfigured")
    minimum = aol.artifacts_min_free_bytes
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=f"{TEMP_PREFIX}probe-")
        try:
            # Random bytes: a compressing filesystem stores zeros in no block at all.
            data = memoryview(os.urandom(PROBE_BYTES))
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
        stats = os.statvfs(path)
    except OSError as exc:
        return ArtifactsProbe(
            path=str(path),
            problem=f"cannot write to AOL_ARTIFACTS_DIR={path}: {exc.strerror or exc}",
            kind="unwritable",
            free_bytes=_free_bytes(path),
            min_free_bytes=minimum,
        )
    free = stats.f_bavail * stats.f_frsize
    if free < minimum:
        return ArtifactsProbe(
            path=str(path),
            problem=f"only {_size(free)} free on the filesystem of AOL_ARTIFACTS_DIR={path}, below the "
            f"minimum of {_size(minimum)} (AOL_ARTIFACTS_MIN_FREE_BYTES={minimum})",
            kind="low_space",
            free_bytes=free,
            min_free_bytes=minimum,
        )
    return ArtifactsProbe(path=str(path), free_bytes=free, min_free_bytes=minimum)


def _free_bytes(path: Path) -> int | None:
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def artifacts_dir_probe() -> str:
    """'' when PROOF artifacts can be written to AOL_ARTIFACTS_DIR now; else one line saying why.

    See ``artifacts_dir_probe_detail``: a real write of PROBE_BYTES, and at least
    AOL_ARTIFACTS_MIN_FREE_BYTES free afterwards.
    """
    return artifacts_dir_probe_detail().problem
