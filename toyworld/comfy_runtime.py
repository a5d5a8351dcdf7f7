"""The real ComfyUI, for the toy world's base model, experiment and evaluation.

The world and the scorers never import ComfyUI; the modules that build, train and sample the toy
base model call ``load_host()`` first: ComfyUI bootstrapped in CPU mode (the trainer's bootstrap)
with its text encoders in fp32 (what training and the demo server use), and the toy world's model
sizes registered with it and with the pack's family registry (``comfy_models.py``).
"""
from __future__ import annotations


def load_host(comfy_root=None) -> None:
    """Bootstrap ComfyUI (CPU, fp32 text encoders) and register the toy models, once."""
    from ..training.bootstrap import bootstrap_comfy

    bootstrap_comfy(comfy_root, cpu=True)
    import comfy.cli_args

    comfy.cli_args.args.fp32_text_enc = True  # as the trainer's features and the demo server use it
    from .comfy_models import register_toy_models

    register_toy_models()


def toy_models():
    """``comfy_models`` (sizes and config classes of the toy base), after ``load_host()``."""
    load_host()
    from . import comfy_models

    return comfy_models
