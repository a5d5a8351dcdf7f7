"""The real ComfyUI and this pack, for the toy world's base model, experiment and evaluation.

The world and the scorers never import ComfyUI; the modules that build, train and sample the toy
base model do, through ``load_host()`` here: ComfyUI bootstrapped in CPU mode with its text encoders
in fp32 (what training and the demo server use), the pack imported as a package (which registers
the toy model sizes, ``nodes/toy_models.py``) and the trainer's package importable as
``nested_attention_training``. Everything goes through ``training/comfy_host.py``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_TRAIN_SCRIPT = "nested_attention_train_script"


def training_package():
    """``training/`` as ``nested_attention_training`` (the trainer's own loader, ``train.py``)."""
    if _TRAIN_SCRIPT not in sys.modules:
        spec = importlib.util.spec_from_file_location(_TRAIN_SCRIPT, REPO_ROOT / "training" / "train.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_TRAIN_SCRIPT] = module
        spec.loader.exec_module(module)
    return sys.modules[_TRAIN_SCRIPT].training_package()


def load_host(comfy_root=None):
    """Bootstrap ComfyUI (CPU, fp32 text encoders) once and import the pack; returns the pack."""
    training_package()
    from nested_attention_training import comfy_host

    comfy_host.bootstrap_comfy(comfy_root, cpu=True)
    import comfy.cli_args

    comfy.cli_args.args.fp32_text_enc = True  # as the trainer's features and the demo server use it
    return comfy_host.load_pack()


def toy_models():
    """The pack's ``nodes.toy_models`` (sizes and config classes of the toy base)."""
    return load_host().nodes.toy_models


def host_adapter():
    return load_host().nodes.host_adapter
