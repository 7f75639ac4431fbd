"""A real, small, full filesystem for the free-space tests: a tmpfs mounted on the artifacts directory."""

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TMPFS_SIZE = "64k"


@contextmanager
def mounted_tmpfs(path: Path, *, size: str = TMPFS_SIZE) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``path`` for the duration; always unmounted afterwards.

    Skipped where mounting is refused (not root, no CAP_SYS_ADMIN), except under CI=true, which
    runs as root and must run these tests.
    """
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {(done.stderr or done.stdout).strip() or done.returncode}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(directory: Path) -> Path:
    """Write one file in ``directory`` until its filesystem has no free block left; returns the file."""
    filler = directory / "filler.bin"
    with open(filler, "wb", buffering=0) as handle:
        while True:
            try:
                handle.write(os.urandom(1024))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    stats = os.statvfs(directory)
    assert stats.f_bavail == 0, "the filesystem still has free blocks"
    return filler


@contextmanager
def full_filesystem(path: Path) -> Iterator[Path]:
    """``path`` on a 64 KiB tmpfs filled to its last block (creating an empty file there still works)."""
    with mounted_tmpfs(path):
        fill(path)
        yield path
