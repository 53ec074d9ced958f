"""Shared-memory segments outlive a killed run: each run holds a lock while it lives, and every engine start
removes this user's KV segments whose run holds no lock (`spec/runtime.md` §3, "Clean-up").

A run's lock is `<tmp>/hetagent-<uid>/<run id>.lock`, held with `flock` for the engine's life; the kernel
releases it however the process ends (SIGKILL too), so a lock that can be taken belongs to a dead run.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from pathlib import Path

from hetagent.errors import HetagentError

SHM = Path("/dev/shm")
_SEGMENT = re.compile(r"^(hx[0-9a-f]+)-kv-\d+-[0-9a-f]{12}$")  # kv_format.segment_name's form


def _lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"hetagent-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or not path.is_dir() or path.is_symlink():
        raise HetagentError(f"{path}: not a private directory of this user (mode 0700); remove it")
    return path


class RunLock:
    """Held while a run's engine lives."""

    def __init__(self, run_id: str):
        self.path = _lock_dir() / f"{run_id}.lock"
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


def _alive(run_id: str, directory: Path) -> bool:
    try:
        fd = os.open(directory / f"{run_id}.lock", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def sweep() -> list[str]:
    """Remove this user's KV segments (and lock files) of runs that no longer live; returns the segments."""
    if not SHM.is_dir():
        return []
    directory, removed, uid = _lock_dir(), [], os.getuid()
    verdict: dict[str, bool] = {}
    for entry in os.scandir(SHM):
        match = _SEGMENT.match(entry.name)
        if not match:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except FileNotFoundError:
            continue
        run_id = match.group(1)
        if run_id not in verdict:
            verdict[run_id] = _alive(run_id, directory)
        if not verdict[run_id]:
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except FileNotFoundError:
                pass
    for lock in directory.glob("hx*.lock"):
        if not _alive(lock.stem, directory):
            lock.unlink(missing_ok=True)
    return removed


def remove_run(run_id: str) -> None:
    """Every segment of a run that is ending (what its requests did not free)."""
    for path in SHM.glob(f"{run_id}-kv-*"):
        if _SEGMENT.match(path.name):
            path.unlink(missing_ok=True)
