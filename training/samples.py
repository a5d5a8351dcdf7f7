"""Sample grids during training: fixed prompts, references and seeds, through the host's own sampler.

Each row is one sample prompt: the reference image, the prompt sampled without the subject, and the
prompt sampled with the subject encoded by the current encoder and applied with
``host.apply_subject``, exactly as the Subject and Apply nodes do (by the run's training
method, method.py: a baseline encodes and applies its subject its own way). Sampling uses
``comfy.sample.sample`` (the KSampler path) with the prompt's word positions in the conditioning,
as *Nested Attention Text Encode* puts them there.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..nodes import host
from .data import TrainingData, reference_pixels
from .errors import TrainingConfigError
from .outputfiles import writing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplePrompt:
    subject: str
    prompt: str
    reference: int  # index of the reference image in TrainingData.images
    word: str


def sample_prompts(data: TrainingData, prompts_file, count: int, has_word) -> list[SamplePrompt]:
    """From ``--sample-prompts`` (JSON list of {"subject", "prompt"}), else the first caption of up to
    ``count`` subjects. The reference is the subject's first image."""
    if prompts_file is None:
        return [SamplePrompt(name, data.images[indices[0]].caption, indices[0], data.images[indices[0]].word)
                for name, indices in list(data.subjects.items())[:count]]
    try:
        entries = json.loads(Path(prompts_file).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise TrainingConfigError(f"--sample-prompts {prompts_file} cannot be read as JSON ({err}); write a list of "
                                  '{"subject": "<folder>", "prompt": "<text with the subject word>"}') from None
    out = []
    for entry in entries if isinstance(entries, list) else [None]:
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("subject", "prompt"))):
            raise TrainingConfigError(f"--sample-prompts {prompts_file}: every entry must be "
                                      '{"subject": "<folder>", "prompt": "<text>"}, got ' + repr(entry))
        if entry["subject"] not in data.subjects:
            raise TrainingConfigError(f"--sample-prompts {prompts_file}: subject {entry['subject']!r} is not a subject "
                                      f"folder of the data ({sorted(data.subjects)})")
        first = data.subjects[entry["subject"]][0]
        word = data.images[first].word
        if not has_word(entry["prompt"], word):
            raise TrainingConfigError(f"--sample-prompts {prompts_file}: prompt {entry['prompt']!r} does not contain "
                                      f"the word {word!r} of subject {entry['subject']!r}; put the word in the prompt")
        out.append(SamplePrompt(entry["subject"], entry["prompt"], first, word))
    return out


def render_grid(session, prompts: list[SamplePrompt], path: Path) -> Path:
    """Sample every prompt without and with its subject; write the PNG grid to ``path``."""
    import comfy.sample

    cfg, models, store = session.config, session.models, session.store
    negative_text = store.text("")
    negative = [[negative_text.cond, _extra(negative_text, None)]]
    size = cfg.resolution
    tiles = []
    with torch.no_grad():
        for prompt in prompts:
            text = store.text(prompt.prompt)
            positive = [[text.cond, _extra(text, host.PROMPT_KEY)]]
            reference = session.data.images[prompt.reference]
            features = store.reference(reference, None)
            subject = session.method.subject(session.encoder, features, prompt.word, models.family)
            with_subject = host.apply_subject(models.patcher, subject, 1.0, 0.0, 1.0, rule=session.method.rule)
            row = [_fit(reference_pixels(reference, None)[0], size)]
            for model in (models.patcher, with_subject):
                latent = comfy.sample.fix_empty_latent_channels(model, torch.zeros(1, 4, size // 8, size // 8))
                noise = comfy.sample.prepare_noise(latent, cfg.sample_seed)
                samples = comfy.sample.sample(model, noise, cfg.sample_steps, cfg.sample_cfg, cfg.sample_sampler,
                                              cfg.sample_scheduler, positive, negative, latent, seed=cfg.sample_seed,
                                              disable_pbar=True)
                row.append(models.vae.decode(samples)[0, ..., :3].float().cpu())
            tiles.append(torch.cat(row, dim=1))  # [H, 3W, 3]
    grid = torch.cat(tiles, dim=0).clamp(0, 1)
    return write_png((grid.numpy() * 255).round().astype(np.uint8), path)


def write_png(pixels: np.ndarray, path: Path) -> Path:
    """Write uint8 ``pixels`` [H, W, 3] to ``path`` atomically (temp file + rename); a failed write is an
    ``OutputWriteError`` naming the file and the space left, and leaves no temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with writing(path, pixels.nbytes, "the sample grid", "free some space there, or sample less often "
                 "(--sample-every 0 turns samples off); then run again (--resume latest continues from the last state)"):
        try:
            Image.fromarray(pixels).save(tmp, format="PNG")
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _extra(text, prompt_key) -> dict:
    extra = {"pooled_output": text.pooled} if text.pooled is not None else {}
    if prompt_key is not None:
        extra[prompt_key] = text.words
    return extra


def _fit(image: torch.Tensor, size: int) -> torch.Tensor:
    """[H, W, 3] -> [size, size, 3], aspect kept, centred on white."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    resized = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=(max(1, round(h * scale)),
                                              max(1, round(w * scale))), mode="bilinear", align_corners=False)[0]
    out = torch.ones(3, size, size)
    top, left = (size - resized.shape[1]) // 2, (size - resized.shape[2]) // 2
    out[:, top:top + resized.shape[1], left:left + resized.shape[2]] = resized
    return out.permute(1, 2, 0)
