"""The cache lock: one live process per cache directory; a dead holder's lock is taken over."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datamill.core.lock import CacheLock
from datamill.errors import CacheLockedError

HOLD_LOCK = """
import sys, time
from pathlib import Path
from datamill.core.lock import CacheLock
with CacheLock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_live_holder_in_another_process_is_named_by_pid(tmp_path: Path) -> None:
    path = tmp_path / "p.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(CacheLockedError, match=rf"PID {holder.pid}\b"):
            CacheLock(path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with CacheLock(path):  # the kernel released the dead holder's lock
        assert path.read_text().strip() == str(os.getpid())


def test_a_stale_lock_file_of_a_finished_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path = tmp_path / "p.lock"
    path.write_text(dead.stdout.strip() + "\n")
    lock = CacheLock(path)
    lock.acquire()
    try:
        assert path.read_text().strip() == str(os.getpid())
    finally:
        lock.release()
    assert path.read_text() == ""


def test_the_lock_can_be_taken_again_after_release(tmp_path: Path) -> None:
    path = tmp_path / "p.lock"
    for _ in range(2):
        started = time.monotonic()
        with CacheLock(path):
            pass
        assert time.monotonic() - started < 1
