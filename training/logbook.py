"""What a run reports: ``train_log.jsonl`` (one JSON object a line), a tqdm progress bar, and with
``--log-with tensorboard`` the same figures as TensorBoard events.

Step lines: ``{"step", "epoch", "loss", "lr", "grad_norm", "samples_per_s", "time"}``; other lines
carry an ``"event"`` ("data", "start", "resume", "save", "samples", "validation", "stop", "diverged",
"end"). Only rank 0 writes; a resumed run appends to the same file. TensorBoard (``<output>/tensorboard``,
torch's ``SummaryWriter``) gets the scalars ``train/loss``, ``train/lr``, ``train/grad_norm``,
``train/samples_per_s`` of every logged step, ``validation/gap_percent``, ``validation/loss_right``,
``validation/loss_wrong`` of each validation, and each sample grid as the image ``samples``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

from .errors import TrainingConfigError
from .outputfiles import writing

TENSORBOARD_MISSING = ("--log-with tensorboard needs the tensorboard package, which is not installed in this "
                       "Python: pip install tensorboard (then open the logs with: tensorboard --logdir "
                       "<output>/tensorboard), or leave out --log-with")


def require_tensorboard() -> None:
    """Raise ``TrainingConfigError`` naming the package when ``--log-with tensorboard`` cannot work."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (imports tensorboard)
    except ImportError:
        raise TrainingConfigError(TENSORBOARD_MISSING) from None


class Logbook:
    def __init__(self, path: Path, enabled: bool, total_steps: int, first_step: int, progress_bar: bool,
                 name: str = "nested attention", tensorboard: Optional[Path] = None):
        self.enabled = enabled
        self.path = Path(path)
        self._file = None
        self._bar = None
        self._board = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
            if tensorboard is not None:
                require_tensorboard()
                from torch.utils.tensorboard import SummaryWriter

                # a resumed run appends; events of steps after the resume point replace the older ones in the UI
                self._board = SummaryWriter(str(tensorboard), purge_step=first_step + 1 if first_step else None)
            if progress_bar:
                from tqdm import tqdm

                self._bar = tqdm(total=total_steps, initial=first_step, desc=name, unit="step",
                                 dynamic_ncols=True, smoothing=0.05)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        line = json.dumps({**record, "time": round(time.time(), 3)}) + "\n"
        with writing(self.path, len(line), "the training log", "free some space there; then run again "
                     "(--resume latest continues from the last state written)"):
            self._file.write(line)
            self._file.flush()

    def event(self, name: str, **fields) -> None:
        self.write({"event": name, **fields})
        if self._board is None:
            return
        if name == "validation":
            for key in ("gap_percent", "loss_right", "loss_wrong"):
                self._board.add_scalar(f"validation/{key}", fields[key], fields["step"])
            self._board.flush()
        elif name == "samples":
            import numpy as np
            from PIL import Image

            with Image.open(fields["path"]) as grid:
                self._board.add_image("samples", np.asarray(grid.convert("RGB")), fields["step"], dataformats="HWC")
            self._board.flush()

    def step(self, step: int, epoch: int, loss: float, lr: float, grad_norm: float, samples_per_s: float,
             write: bool) -> None:
        if write:
            self.write({"step": step, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                        "samples_per_s": round(samples_per_s, 3)})
            if self._board is not None:
                for key, value in (("loss", loss), ("lr", lr), ("grad_norm", grad_norm),
                                   ("samples_per_s", samples_per_s)):
                    self._board.add_scalar(f"train/{key}", value, step)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # the rest of a line that could not be written: its write already raised OutputWriteError
                pass
        if self._board is not None:
            self._board.close()
        self._bar = self._file = self._board = None
