"""Train Nested Attention weights on a frozen ComfyUI checkpoint.

    python training/train.py --checkpoint sd_xl_base_1.0.safetensors \
        --clip-vision CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors --data my_subjects --output runs/me
    torchrun --nproc_per_node 4 training/train.py ...          # several GPUs

``--help`` lists every flag. Finds ComfyUI (this pack in ``ComfyUI/custom_nodes/``, else
``--comfyui``, else ``$NESTED_ATTENTION_COMFYUI``), imports it in CPU mode only when there is no CUDA
or ``--cpu`` is given, imports this pack as a package, and trains through the same host attention
path as inference (``nested_attention_training.loop``).
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
PACKAGE = "nested_attention_training"


def training_package():
    """``training/`` as the package ``nested_attention_training`` (by path: training/ is not on sys.path)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, _HERE / "__init__.py",
                                                      submodule_search_locations=[str(_HERE)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def main(argv=None) -> int:
    training_package()
    from nested_attention_training import comfy_host

    comfy_host.append_repo_root()  # nested_attention_core, for the config's error types
    from nested_attention_training.config import parse_args

    config = parse_args(argv, prog="train.py")
    # ComfyUI logs every model load at INFO on the root logger: show its warnings, and our INFO lines
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("nested_attention_training").setLevel(logging.INFO)

    import torch

    from nested_attention_training.dist import launched_ranks

    use_cuda = torch.cuda.is_available() and not config.cpu
    ranks = launched_ranks()
    if use_cuda and ranks.active:
        torch.cuda.set_device(ranks.local_rank)  # before ComfyUI picks its device
    comfy_host.bootstrap_comfy(config.comfyui, cpu=not use_cuda, search_pack_location=True)
    comfy_host.load_pack()
    if not ranks.is_main:
        logging.getLogger("nested_attention_training").setLevel(logging.WARNING)

    from nested_attention_training.dist import init_distributed, shutdown
    from nested_attention_training.errors import TrainingDivergedError
    from nested_attention_core.errors import NestedAttentionError
    from nested_attention_training.loop import train
    from nested_attention_training.session import open_session

    log = logging.getLogger("nested_attention_training")
    dist = init_distributed(use_cuda)
    try:
        result = train(open_session(config, dist))
    except (NestedAttentionError, TrainingDivergedError) as err:
        log.error("%s", err)
        return 2
    finally:
        shutdown(dist)
    if result.weights is not None:
        log.info("%s at step %d: %s", result.status, result.step, result.weights)
    return 0


if __name__ == "__main__":
    if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
        sys.path.pop(0)  # training/*.py must not become top-level modules (data, config, ...)
    sys.exit(main())
