"""Fixtures of the trainer tests: the training package, tiny data folders, tiny-model configs.

Everything runs on the tiny SDXL-shaped checkpoint (real ``model_base.SDXL``: pooled output and
size conditioning) at 64 px with a small encoder, so that a step takes a fraction of a second on
two CPU cores. Subprocess runs of the trainer (``python -m nested_attention.training``) register the
tiny models with ``--extra-module tests/harness/comfyui_pack/__init__.py``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_MODELS_MODULE = REPO_ROOT / "tests" / "harness" / "comfyui_pack" / "__init__.py"
TINY_ENCODER = {"num_tokens": 4, "encoder_width": 32, "encoder_depth": 1, "encoder_heads": 2, "encoder_dim_head": 16,
                "encoder_ff_mult": 2}
COLORS = [(200, 40, 40), (40, 160, 60), (50, 70, 200), (220, 180, 30), (150, 60, 170)]


@pytest.fixture(scope="session")
def training(host, tiny_models):
    """The trainer's package ``nested_attention.training``, with ComfyUI and the tiny models ready."""
    import nested_attention.training.loop  # noqa: F401  (imports every module of the trainer)

    return nested_attention.training


@pytest.fixture(scope="session")
def helpers():
    """This module's helpers (test modules cannot import a conftest by name in importlib mode)."""
    import types

    return types.SimpleNamespace(make_data=make_data, draw_image=draw_image, tiny_config=tiny_config,
                                 cli_args=cli_args, run_train=run_train, train_command=train_command,
                                 load_weights_tensors=load_weights_tensors, TINY_ENCODER=TINY_ENCODER,
                                 REPO_ROOT=REPO_ROOT)


@pytest.fixture(scope="session")
def sdxl_models(training, tiny_models):
    """The tiny SDXL checkpoint and CLIP vision tower, loaded once by the trainer's own loader."""
    from nested_attention.training.base_models import load_base_models

    return load_base_models(tiny_config(tiny_models, "unused", "unused"))


def draw_image(path: Path, seed: int, size=(72, 64), color=None) -> None:
    """A subject-like picture: a coloured ellipse on a noisy background (deterministic)."""
    rng = np.random.default_rng(seed)
    background = (rng.random((size[1], size[0], 3)) * 80 + 90).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    x, y = rng.integers(4, size[0] // 3), rng.integers(4, size[1] // 3)
    draw.ellipse([x, y, x + size[0] // 2, y + size[1] // 2], fill=color or COLORS[seed % len(COLORS)])
    image.save(path)


def make_data(root: Path, subjects: dict[str, int], caption: str = "a photo of a {word}", seed: int = 0,
              words: dict | None = None) -> Path:
    """``subjects``: folder name -> number of images; ``words``: folder -> word (written to subjects.json),
    else "person". Captions get the image number, so they differ."""
    root.mkdir(parents=True, exist_ok=True)
    for s, (name, count) in enumerate(subjects.items()):
        folder = root / name
        folder.mkdir(exist_ok=True)
        for i in range(count):
            draw_image(folder / f"{i:03d}.png", seed * 1000 + s * 100 + i, color=COLORS[s % len(COLORS)])
            word = (words or {}).get(name, "person")
            (folder / f"{i:03d}.txt").write_text(f"{caption.format(word=word)}, picture {i}")
    if words is not None:
        import json

        (root / "subjects.json").write_text(json.dumps(words))
    return root


def tiny_config(tiny_models, data, output, **overrides):
    from nested_attention.training.config import TrainConfig

    values = dict(checkpoint=str(tiny_models["sdxl"]), clip_vision=str(tiny_models["clip_vision"]), data=str(data),
                  output=str(output), default_word="person", resolution=64, batch_size=2, max_steps=4,
                  warmup_steps=0, lr=1e-3, save_every=0, sample_every=0, log_every=1, progress_bar=False,
                  **TINY_ENCODER)
    values.update(overrides)
    return TrainConfig(**values)


def cli_args(tiny_models, comfy_root, data, output, **overrides) -> list[str]:
    """The command line of ``tiny_config`` for a subprocess of train.py."""
    config = tiny_config(tiny_models, data, output, **overrides)
    args = ["--comfyui", str(comfy_root), "--extra-module", str(TEST_MODELS_MODULE)]
    from dataclasses import fields

    for f in fields(config):
        value = getattr(config, f.name)
        default = f.default
        if f.name in ("comfyui", "extra_module") or value == default or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(value)]
    return args


def train_command(*args: str, processes: int = 1) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "nested_attention.training", *args]
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), "--standalone", f"--nproc_per_node={processes}", "-m", "nested_attention.training", *args]


def run_train(*args: str, processes: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(train_command(*args, processes=processes), capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO_ROOT)


def load_weights_tensors(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))
