"""Toy-world data: a training folder in the trainer's layout, and in-memory renders for the scorers.

Training folder (what ``training/data.py`` scans)::

    root/
      subjects.json            {"person_0042": "person", "pet_0007": "dog", ...}  (the trainer's default)
      words.json               the same mapping, under the name the toy-world brief uses
      toyworld.json            what every image shows: identity, scene, variation seed, realised look
      person_0042/
        000.png  000.txt       render + caption ("a photo of a person in the snow, on the left")
        masks/000.png          the subject's mask (white = subject), the trainer's mask layout

Held-out identities (ids >= HELDOUT_START) are refused unless asked for explicitly.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .errors import DatasetError
from .identity import CLASS_WORDS, DOMAINS, is_heldout, sample_identity, subject_key
from .render import render, render_with_mask
from .look import realised_look, visible
from .rng import key_seed
from .scene import Scene, caption, sample_scene

log = logging.getLogger(__name__)

WORDS_FILES = ("subjects.json", "words.json")
MANIFEST_FILE = "toyworld.json"
MASK_FOLDER = "masks"


@dataclass(frozen=True)
class Sample:
    """One render to make: which identity, in which scene, with which jitter."""
    domain: str
    identity_id: int
    scene: Scene
    variation_seed: int

    @property
    def key(self) -> str:
        return subject_key(self.domain, self.identity_id)

    @property
    def look(self) -> dict[str, str]:
        """Each look factor of its domain as drawn (``look.realised_look``), also where the framing crops it."""
        return realised_look(self.domain, self.scene, self.variation_seed, self.key)

    @property
    def shown_look(self) -> dict[str, str | None]:
        """``look`` with each factor that the framing hides (a close-up's shirt, ``look.visible``) None:
        what the render shows (the scene model's labels and scores)."""
        return {f: v if visible(f, self.scene.framing) else None for f, v in self.look.items()}


def make_samples(domains: Sequence[str], identity_ids: Iterable[int], per_identity: int, seed: int) -> list[Sample]:
    """``per_identity`` samples of every (domain, id), each with a random scene (naming only its
    domain's look, ``Scene.for_domain``) and variation seed."""
    if per_identity < 1:
        raise DatasetError(f"per_identity {per_identity} must be at least 1")
    ids = list(identity_ids)
    if not ids or not domains:
        raise DatasetError("no identities: give at least one domain and one identity id")
    samples = []
    for domain in domains:
        if domain not in DOMAINS:
            raise DatasetError(f"unknown domain {domain!r}: use one of {DOMAINS}")
        for identity_id in ids:
            for n in range(per_identity):
                key = ("toyworld-sample", seed, domain, identity_id, n)
                samples.append(Sample(domain, identity_id, sample_scene(*key).for_domain(domain),
                                      key_seed(*key) & 0x7FFFFFFF))
    return samples


def iter_renders(samples: Iterable[Sample], size: int = 64) -> Iterator[tuple[Sample, np.ndarray]]:
    """Each sample with its render as a uint8 array [size, size, 3]."""
    for sample in samples:
        identity = sample_identity(sample.domain, sample.identity_id)
        yield sample, np.asarray(render(identity, sample.scene, sample.variation_seed, size))


def render_array(samples: Sequence[Sample], size: int = 64, progress=None) -> np.ndarray:
    """All renders of ``samples`` as one uint8 array [n, size, size, 3]; ``progress(1)`` after each."""
    out = np.empty((len(samples), size, size, 3), np.uint8)
    for i, (_, image) in enumerate(iter_renders(samples, size)):
        out[i] = image
        if progress is not None:
            progress(1)
    return out


def write_training_folder(root, domains: Sequence[str], identity_ids: Iterable[int], per_identity: int,
                          seed: int = 0, size: int = 64, masks: bool = True, allow_heldout: bool = False,
                          progress=None) -> Path:
    """Render ``per_identity`` images of every identity into ``root`` (which must be empty or new).
    ``progress(n)`` is called after each image (e.g. a tqdm bar's ``update``)."""
    root = Path(root)
    ids = list(identity_ids)
    heldout = [i for i in ids if is_heldout(i)]
    if heldout and not allow_heldout:
        raise DatasetError(f"identity ids {heldout[:5]}{'...' if len(heldout) > 5 else ''} are held out "
                           "(kept for evaluation): use training ids, or pass allow_heldout=True")
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root} exists and is not empty: give a new folder, or delete it first")
    samples = make_samples(domains, ids, per_identity, seed)
    root.mkdir(parents=True, exist_ok=True)
    words, manifest, counters = {}, [], {}
    for sample in samples:
        identity = sample_identity(sample.domain, sample.identity_id)
        folder = root / sample.key
        n = counters.get(sample.key, 0)
        counters[sample.key] = n + 1
        if n == 0:
            folder.mkdir()
            if masks:
                (folder / MASK_FOLDER).mkdir()
            words[sample.key] = CLASS_WORDS[sample.domain]
        name = f"{n:03d}"
        rendered = render_with_mask(identity, sample.scene, sample.variation_seed, size)
        rendered.image.save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(caption(sample.domain, sample.scene) + "\n", encoding="utf-8")
        if masks:
            rendered.mask.save(folder / MASK_FOLDER / f"{name}.png")
        manifest.append({"file": f"{sample.key}/{name}.png", **asdict(sample), "look": sample.look,
                         "box": list(rendered.box)})
        if progress is not None:
            progress(1)
    for words_file in WORDS_FILES:
        (root / words_file).write_text(json.dumps(words, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    (root / MANIFEST_FILE).write_text(json.dumps({"seed": seed, "size": size, "images": manifest}, indent=1) + "\n",
                                      encoding="utf-8")
    log.info("wrote %d images of %d subjects to %s", len(samples), len(words), root)
    return root
