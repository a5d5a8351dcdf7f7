"""The files a run writes into its output folder: a failed write as one clear error, step weights kept to
``--keep-weights``, and temp files that killed runs left behind.

Weights and states are written to ``<file>.<pid>.tmp`` and renamed (state.py, ``write_safetensors``), so a
failed write leaves the previous files whole and removes its temp file. What fails is reported as
``OutputWriteError``: the file, its folder, the space left there and what the file needs, instead of torch's
``[enforce fail at inline_container.cc] unexpected pos`` or a safetensors traceback. A run killed while writing
(SIGKILL, power loss) leaves its temp file; the next run into the folder, holding its lock, removes those of
processes that are no longer running.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError

from .errors import OutputWriteError
from .outputlock import process_running

log = logging.getLogger(__name__)

_TEMP_NAME = re.compile(r"^.+\.(\d+)\.tmp$")
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def tensor_bytes(obj) -> int:
    """The bytes of every tensor in a (nested) dict, list or tuple: about what writing it takes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB"


def _disk_full(err: BaseException) -> bool:
    while err is not None:
        if isinstance(err, OSError) and err.errno in _FULL or "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


@contextmanager
def writing(path: Path, needed: int, what: str, advice: str):
    """Run the write of ``path`` (``what``: "the weights", "the training state"); any failure becomes an
    ``OutputWriteError`` naming the folder, its free space and ``needed`` (bytes, about), with ``advice``."""
    path = Path(path)
    try:
        yield
        return
    except (OSError, RuntimeError, ValueError, SafetensorError) as err:  # what torch and safetensors raise
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        space = f"{_mib(free)} free" if free is not None else "free space unknown"
        full = _disk_full(err) or (free is not None and free < needed)
        cause = "the disk is full" if full else f"{type(err).__name__}: {str(err)[:200]}"
    # raised out of the except clause: the failed write's traceback, whose frames hold the writer's open (deleted)
    # temp file and so its disk space, is dropped here, not kept alive by the error
    raise OutputWriteError(f"cannot write {what} {path.name} into {path.parent}: {cause} ({space} there, the file "
                           f"needs about {_mib(needed)}); {advice}")


def step_weights(output_dir: Path, name: str) -> list[tuple[int, Path]]:
    """``<name>-step<N>.safetensors`` in ``output_dir``, oldest first."""
    pattern = re.compile(rf"^{re.escape(name)}-step(\d+)\.safetensors$")
    found = [(int(m.group(1)), p) for p in Path(output_dir).iterdir() if (m := pattern.match(p.name))]
    return sorted(found)


def prune_step_weights(output_dir: Path, name: str, keep: int) -> None:
    """Keep the newest ``keep`` step weights (0: all)."""
    if keep:
        for _, path in step_weights(output_dir, name)[:-keep]:
            path.unlink(missing_ok=True)


def remove_stale_temp_files(*folders: Path, min_age_s: float = 0.0) -> list[Path]:
    """Remove ``*.<pid>.tmp`` files of processes no longer running from ``folders`` (not recursive): what a run
    killed while writing left. Called by the run that holds the output folder's lock. ``min_age_s``: leave younger
    files alone, for folders other runs write too (a shared feature cache, maybe from another machine, whose
    process ids mean nothing here)."""
    removed = []
    now = time.time()
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for path in Path(folder).iterdir():
            m = _TEMP_NAME.match(path.name)
            if m and path.is_file() and int(m.group(1)) != os.getpid() and not process_running(int(m.group(1))):
                stat = path.stat()
                if now - stat.st_mtime < min_age_s:
                    continue
                size = stat.st_size
                path.unlink(missing_ok=True)
                removed.append(path)
                log.warning("removed %s (%s), a temp file left by a run that was killed while writing", path,
                            _mib(size))
    return removed
