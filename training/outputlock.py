"""One run per output folder: an exclusive lock on ``<output>/.train.lock`` for the life of the run.

Two runs writing into one folder would overwrite each other's weights and states and interleave one
``train_log.jsonl``. A run locks the file with ``fcntl.flock`` (the kernel drops the lock when the
process ends, however it ends) and writes its PID and host into it, for the messages: a second run
stops at once with an error naming the folder and the PID that holds it. A lock file left behind by
a killed run (its flock gone, its PID no longer running) is taken over with a warning. The file is
never deleted (deleting a lock file lets two runs lock two different files); a run that ends clears
the PID. Under torchrun only rank 0 locks (the other ranks share its folder); if rank 0 cannot, every
rank stops.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from .dist import DistContext, any_rank
from .errors import TrainingConfigError

log = logging.getLogger(__name__)

LOCK_NAME = ".train.lock"


class OutputLock:
    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: Optional[int] = None

    def acquire(self) -> "OutputLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_holder(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TrainingConfigError(
                    f"--output {self.folder} is in use by another training run ({_describe(holder)}; lock file "
                    f"{self.path}): wait for that run to end or stop it, or pass another --output") from None
            raise TrainingConfigError(f"--output {self.folder}: cannot lock {self.path} ({err}); put the output "
                                      "folder on a file system that supports file locks") from None
        previous = _read_holder(fd)
        if previous is not None and previous[0] != os.getpid():
            log.warning("output folder %s: taking over the lock of %s, which is no longer running (a run that was "
                        "killed?); its last state can be continued with --resume latest", self.folder,
                        _describe(previous))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no PID: the next run takes the folder without a warning
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_holder(fd: int) -> Optional[tuple[int, str]]:
    """(PID, host) written by the run that holds or held the lock; None when empty or unreadable."""
    try:
        words = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
        return int(words[0]), (words[1] if len(words) > 1 else "")
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def _describe(holder: Optional[tuple[int, str]]) -> str:
    if holder is None:
        return "PID unknown"
    pid, host = holder
    where = f" on {host}" if host and host != socket.gethostname() else ""
    if where or _alive(pid):
        return f"PID {pid}{where}"
    # the flock is held, but not by that PID: a process it started inherited the lock
    return f"PID {pid}, no longer running, but a process it started still holds the lock: end that process"


@contextmanager
def hold_output(folder, dist: DistContext, device):
    """The output folder's lock for the duration of the ``with`` (rank 0 only); every rank stops if it is taken."""
    lock, error = None, None
    if dist.is_main:
        try:
            lock = OutputLock(folder).acquire()
        except TrainingConfigError as err:
            error = err
    if any_rank(error is not None, dist, device):
        raise error or TrainingConfigError(f"--output {folder} could not be locked by rank 0 (its log says why)")
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
