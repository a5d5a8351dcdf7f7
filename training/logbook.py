"""What a run reports: ``train_log.jsonl`` (one JSON object a line) and a tqdm progress bar.

Step lines: ``{"step", "epoch", "loss", "lr", "grad_norm", "samples_per_s", "time"}``; other lines
carry an ``"event"`` ("data", "start", "resume", "save", "samples", "stop", "diverged", "end"). Only
rank 0 writes; a resumed run appends to the same file.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path


class Logbook:
    def __init__(self, path: Path, enabled: bool, total_steps: int, first_step: int, progress_bar: bool,
                 name: str = "nested attention"):
        self.enabled = enabled
        self.path = Path(path)
        self._file = None
        self._bar = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
            if progress_bar:
                from tqdm import tqdm

                self._bar = tqdm(total=total_steps, initial=first_step, desc=name, unit="step",
                                 dynamic_ncols=True, smoothing=0.05)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._file.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")
        self._file.flush()

    def event(self, name: str, **fields) -> None:
        self.write({"event": name, **fields})

    def step(self, step: int, epoch: int, loss: float, lr: float, grad_norm: float, samples_per_s: float,
             write: bool) -> None:
        if write:
            self.write({"step": step, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                        "samples_per_s": round(samples_per_s, 3)})
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._file is not None:
            self._file.close()
        self._bar = self._file = None
