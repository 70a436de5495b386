"""One writer per run directory: an advisory lock on ``<run_dir>/.lock``.

Two ``yfpo train --out-dir D`` at once would interleave their metrics and mix checkpoints of different seeds,
so whoever trains into a directory holds this lock for the whole run, and a second writer (another process,
or another thread of the app) gets :class:`RunLockedError` naming the holder.

The lock is ``flock`` on an open file, so the kernel releases it when the holder exits for any reason (a
crash, ``kill -9``, a power cut): a lock left by a dead process is stale by construction and the next
writer simply takes it. The file itself stays, holding the last holder's pid, host and start time, for the
message. ``flock`` locks belong to an open file description, so two threads of one process that each
open the file also exclude each other. (POSIX only; on network file systems without ``flock`` support the
lock may not hold across machines.)
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from yfpo_core.errors import YfpoError

LOCK_FILE = ".lock"


class RunLockedError(YfpoError):
    """Another process (or thread) is writing into this run directory."""


class RunLock:
    """``with RunLock(run_dir):`` holds the run directory for this process; see the module docstring."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            raise RunLockedError(f"{self.path.parent} is in use by {holder}; wait for that run to end or stop it, "
                                 "or choose another --out-dir") from None
        except BaseException:
            os.close(fd)
            raise
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _describe(fd: int) -> str:
    """Who holds the lock, from what the holder wrote into the file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"process {int(info['pid'])} on {str(info['host'])[:60]} (since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def is_locked(run_dir: str | os.PathLike[str]) -> bool:
    """Whether a live process (or thread) holds ``run_dir``'s lock right now. A ``status.json`` that says
    ``running`` while nobody holds the lock belongs to a process that died without a word (``kill -9``)."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
