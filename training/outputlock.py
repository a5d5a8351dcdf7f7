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
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _not_writable("--output", self.folder, err) from None
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
            log.warning("output folder %s: taking over the lock file of PID %d%s, which no longer holds it (a run "
                        "that was killed?); its last state can be continued with --resume latest", self.folder,
                        previous[0], _host(previous))
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


def process_running(pid: int) -> bool:
    """Whether a process of this machine has that PID."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def _host(holder: tuple[int, str]) -> str:
    """Where the holder ran when that was another machine (" on <host>"), else nothing."""
    host = holder[1]
    return f" on {host}" if host and host != socket.gethostname() else ""


def _describe(holder: Optional[tuple[int, str]]) -> str:
    """Who holds a lock that is held now."""
    if holder is None:
        return "PID unknown"
    pid, where = holder[0], _host(holder)
    if where or process_running(pid):
        return f"PID {pid}{where}"
    # the flock is held, but not by that PID: a process it started inherited the lock
    return f"PID {pid}, no longer running, but a process it started still holds the lock: end that process"


def _not_writable(flag: str, folder: Path, err: OSError) -> TrainingConfigError:
    return TrainingConfigError(f"{flag} {folder} is not writable ({err.strerror or err}: {err.filename or folder}): "
                               f"give {flag} a folder this user can write to")


def check_writable(folder, flag: str) -> None:
    """Create ``folder`` if needed and a file in it (removed again): a read-only file system, missing permissions or
    a file in the way stop here, naming ``flag``, not in the middle of a run."""
    folder = Path(folder)
    probe = folder / f".write-check.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as err:
        raise _not_writable(flag, folder, err) from None


_HELD: dict = {}  # output folders this process holds (resolved path -> OutputLock, None on ranks other than 0)


@contextmanager
def hold_output(config, dist: DistContext, device):
    """For the duration of the ``with``: the lock of ``config.output_dir`` (rank 0), after checking that the output
    folder (rank 0) and the feature cache folder (every rank: each writes entries) are writable; every rank stops if
    one of them is not, naming the flag. Reentrant: ``cli.main`` holds it before loading any model, and ``train``
    inside it finds it held."""
    folder = config.output_dir
    key = folder.resolve()
    if key in _HELD:
        yield _HELD[key]
        return
    lock, error = None, None
    try:
        if dist.is_main:
            lock = OutputLock(folder).acquire()
            check_writable(folder, "--output")
        if config.cache_path is not None:
            check_writable(config.cache_path, "--cache-dir" if config.cache_dir else "--output")
    except TrainingConfigError as err:
        error = err
    if any_rank(error is not None, dist, device):
        if lock is not None:
            lock.release()
        raise error or TrainingConfigError(f"--output {folder} could not be locked or written by another rank (its "
                                           "log says why)")
    _HELD[key] = lock
    try:
        yield lock
    finally:
        del _HELD[key]
        if lock is not None:
            lock.release()
