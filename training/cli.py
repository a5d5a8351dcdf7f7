"""Train Nested Attention weights on a frozen ComfyUI checkpoint.

    nested-attention-train --checkpoint sd_xl_base_1.0.safetensors \\
        --clip-vision CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors --data my_subjects --output runs/me
    python -m nested_attention.training ...                          # the same
    torchrun --nproc_per_node 4 -m nested_attention.training ...     # several GPUs

``--help`` lists every flag. Finds ComfyUI (this pack in ``ComfyUI/custom_nodes/``, else
``--comfyui``, else ``$NESTED_ATTENTION_COMFYUI``), imports it in CPU mode only when there is no CUDA
or ``--cpu`` is given, and trains through the same host attention path as inference (``loop.py``).
"""
from __future__ import annotations

import logging
import signal
import sys

from . import bootstrap
from .config import parse_args

LOGGER = "nested_attention.training"


def main(argv=None) -> int:
    config = parse_args(argv, prog="nested-attention-train")
    # ComfyUI logs every model load at INFO on the root logger: show its warnings, and our INFO lines
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(LOGGER).setLevel(logging.INFO)

    import torch

    from .dist import launched_ranks

    use_cuda = torch.cuda.is_available() and not config.cpu
    ranks = launched_ranks()
    if use_cuda and ranks.active:
        torch.cuda.set_device(ranks.local_rank)  # before ComfyUI picks its device
    bootstrap.bootstrap_comfy(config.comfyui, cpu=not use_cuda, search_pack_location=True)
    if not ranks.is_main:
        logging.getLogger(LOGGER).setLevel(logging.WARNING)

    from ..nested_attention_core.errors import NestedAttentionError
    from .dist import init_distributed, shutdown
    from .errors import TrainingDivergedError
    from .loop import train
    from .outputlock import hold_output
    from .session import open_session

    log = logging.getLogger(LOGGER)
    dist = init_distributed(use_cuda)
    device = torch.device("cuda", ranks.local_rank) if use_cuda else torch.device("cpu")
    try:
        with hold_output(config, dist, device):  # a busy or unwritable --output stops before any model loads
            result = train(open_session(config, dist))
    except (NestedAttentionError, TrainingDivergedError) as err:
        log.error("%s", err)
        return 2
    finally:
        shutdown(dist)
    if result.weights is not None:
        log.info("%s at step %d: %s", result.status, result.step, result.weights)
    return exit_code(result)


def exit_code(result) -> int:
    """0 for a finished run; a run that a signal stopped before --max-steps (its state saved) exits as a process
    ended by that signal is reported, 128 + the signal's number (SIGTERM 143, SIGINT 130), so that a job
    scheduler or a shell script sees that it did not finish."""
    if result.status == "stopped" and result.signal:
        return 128 + signal.Signals[result.signal].value
    return 0


if __name__ == "__main__":
    sys.exit(main())
