"""The cache directory's lock: one process runs a cache at a time.

``fcntl.flock`` is released by the kernel when its holder dies, so a lock left by a killed
process is simply taken over; the PID written in the file is only there to name the holder in
the error a second process gets.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from datamill.errors import CacheLockedError

log = logging.getLogger(__name__)


class CacheLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CacheLockedError(
                f"{self.path} is held by PID {holder}: another datamill process is running this cache. "
                "Wait for it to finish, or stop it, then rerun."
            ) from None
        previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if previous and previous != str(os.getpid()):
            log.info("took over the lock of PID %s, which is no longer running", previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> CacheLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
