"""Does the encoder use the reference? The reference gap on held-out subjects, logged during training.

The training loss alone cannot say it: most of the denoising loss is the prompt's and the base's, and
it falls whether or not the subject tokens carry identity. On a folder of subjects the run never
trains on (``--validation-data``, the training folder's layout), every image is denoised twice on
the same fixed noise and timestep: with a reference of its own subject (another image of it, whole,
as users give references) and with a reference of another subject of the same word. Logged every
``--validate-every`` steps as a ``validation`` event:

    loss_right, loss_wrong, gap_percent = 100 * (loss_wrong - loss_right) / loss_right

A gap near 0 means the subject tokens carry nothing specific to the subject; a growing gap is
identity being learned, and its plateau says when more steps stop paying.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .batch import RowPlan, assemble
from .data import ReferenceChoice, scan_data_folder
from .errors import TrainingDataError


class ReferenceGap:
    def __init__(self, session, folder, max_images: int = 64):
        cfg = session.config
        if not Path(folder).is_dir():
            raise TrainingDataError(f"validation folder {folder} does not exist or is not a folder: pass "
                                    "--validation-data DIR, a folder of held-out subjects in the --data layout")
        words = Path(folder) / "subjects.json"
        self.data = scan_data_folder(folder, session.has_word, words if words.is_file() else None, cfg.default_word)
        subjects = sorted(self.data.subjects)
        by_word: dict[str, list[str]] = {}
        for name in subjects:
            by_word.setdefault(self.data.images[self.data.subjects[name][0]].word, []).append(name)
        self.right, self.wrong = [], []
        for name in subjects:
            images = self.data.subjects[name]
            peers = by_word[self.data.images[images[0]].word]
            if len(images) < 2 or len(peers) < 2:
                continue
            other = peers[(peers.index(name) + 1) % len(peers)]  # the next subject of the same word
            for k, image in enumerate(images):
                own = images[(k + 1) % len(images)]
                self.right.append(RowPlan(image, 0, len(self.right), ReferenceChoice(own, None, False), "none"))
                self.wrong.append(RowPlan(image, 0, len(self.wrong),
                                          ReferenceChoice(self.data.subjects[other][0], None, False), "none"))
        if not self.right:
            raise TrainingDataError(f"validation folder {folder} needs at least two subjects of the same word with "
                                    "two images each: give a folder in the training data's layout (--validation-data)")
        self.right, self.wrong = self.right[:max_images], self.wrong[:max_images]
        self.seed = cfg.seed

    @torch.no_grad()
    def __call__(self, session, batch_size: int = 32) -> dict:
        den, totals = session.denoiser, {"right": 0.0, "wrong": 0.0}
        for start in range(0, len(self.right), batch_size):
            draws = None  # the right rows draw their own (fixed by position); the wrong rows reuse them
            for kind, plans in (("right", self.right), ("wrong", self.wrong)):
                batch = assemble(session.store, self.data, plans[start:start + batch_size], den.model_sampling,
                                 den.process_latent_in, self.seed, session.config.background_loss_weight, draws)
                draws = (batch.sigma, batch.noise)
                batch = batch.to(session.device)
                with torch.autocast(session.device.type, dtype=session.autocast_dtype,
                                    enabled=session.autocast_dtype is not None):
                    nested = session.method.nested(session.encoder, batch.references)
                totals[kind] += float(den.losses(batch, nested, session.autocast_dtype).double().sum())
        right, wrong = totals["right"] / len(self.right), totals["wrong"] / len(self.right)
        return {"loss_right": round(right, 6), "loss_wrong": round(wrong, 6),
                "gap_percent": round(100 * (wrong - right) / right, 4), "images": len(self.right)}
