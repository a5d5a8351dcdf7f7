"""The toy world's workflow in a real headless ComfyUI: the harness's server on the committed toy models.

    with running_toy_server(base_dir) as server:
        prompt = ui_to_api(load_workflow(WORKFLOW), server.object_info())   # harness.server's helpers
        run = server.run(prompt)

The server (``harness.server``: this pack and the tests' tiny-models pack) gets the toy world's
committed models folder (``toyworld/weights/models``), the toy world's ComfyUI pack
(``toyworld/comfyui_pack``, which teaches ComfyUI the toy sizes) and the workflow's two reference
images (``toyworld/workflows/input/``: held-out toy person 1800 and dog 1800). The workflow,
``toyworld/workflows/toyworld_two_subjects.json``, runs only in such a server: a user's ComfyUI
cannot load the toy checkpoint.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

TOYWORLD_DIR = Path(__file__).resolve().parent
WORKFLOWS_DIR = TOYWORLD_DIR / "workflows"
WORKFLOW = WORKFLOWS_DIR / "toyworld_two_subjects.json"
INPUTS_DIR = WORKFLOWS_DIR / "input"  # the reference images the workflow loads
TOY_PACK_DIR = TOYWORLD_DIR / "comfyui_pack"
TOY_PACK_DIR_NAME = "nested_attention_toyworld_models"
# The toy world's trained models, committed (written by publish.py).
TOY_MODELS_DIR = TOYWORLD_DIR / "weights" / "models"
TOY_MODEL_FILES = ("checkpoints/toyworld_base.safetensors", "clip_vision/toyworld_clip_vision.safetensors",
                   "nested_attention/toyworld_nested_attention.safetensors")


class MissingToyModels(FileNotFoundError):
    """The toy world's trained models are not in ``toyworld/weights/models``."""


def toy_models_dir() -> Path:
    """``toyworld/weights/models``, checked to hold the toy world's three models."""
    for name in TOY_MODEL_FILES:
        if not (TOY_MODELS_DIR / name).is_file():
            raise MissingToyModels(
                f"missing {TOY_MODELS_DIR / name}: the toy world's trained models are committed under "
                f"toyworld/weights/models/ (restore them with `git checkout -- toyworld/weights`), or train them "
                f"again with `make toyworld` (about 80 minutes on 2 CPU cores)")
    return TOY_MODELS_DIR


@contextlib.contextmanager
def running_toy_server(base_dir, frontend: bool = False, timeout: float = 120) -> Iterator:
    """``harness.server.running_server`` on the toy models, with the toy pack and the workflow's images."""
    from harness import server

    inputs = sorted(INPUTS_DIR.glob("*.png"))
    with server.running_server(base_dir, toy_models_dir(), timeout=timeout, frontend=frontend,
                               packs={TOY_PACK_DIR_NAME: TOY_PACK_DIR}, inputs=inputs) as running:
        yield running
