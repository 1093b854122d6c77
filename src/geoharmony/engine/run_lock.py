"""One training process per run folder: an exclusive, non-blocking lock on ``<run>/.lock``.

Two processes resuming the same folder would interleave epochs and overwrite each other's
checkpoints; the second one fails at once instead. The lock is an ``flock``, so the kernel drops
it when its holder exits, killed or not: a stale lock file never blocks a resume.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class RunFolderBusy(RuntimeError):
    """Another process is training in the run folder."""


class RunLock:
    """``with RunLock(run_dir):`` holds the folder's lock for the block (POSIX only)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(
                f"another process is training in {self.path.parent} (it holds {self.path});"
                " wait for it or stop it before resuming"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
