"""The optimizer on the encoder's trained parameters (AdamW, or Adafactor for less memory), linear warm-up
then cosine decay, gradient clipping, mixed precision.

Optimizer state per trained parameter (float32): AdamW keeps two moments, 8 bytes; torch's own
``Adafactor`` keeps, for a matrix [n, m], one row and one column of second-moment estimates (n + m
numbers instead of n * m) and no first moment, so for SDXL's default encoder (424M parameters, 3.4 GB
of AdamW moments) its state is a few MB. Adafactor is torch's (no extra dependency, every device,
including the CPU the tests run on); 8-bit AdamW (bitsandbytes) would need a CUDA build for its kernels
and still keep 2 bytes per parameter. Adafactor's step is relative: ``--lr`` times each tensor's RMS.
"""
from __future__ import annotations

import math

import torch

from .config import TrainConfig


def make_optimizer(parameters: list, config: TrainConfig) -> torch.optim.Optimizer:
    """``--optimizer`` over the trained parameters. AdamW fused (one kernel for all parameters: on the CPU
    30x faster than the per-tensor loop); Adafactor one tensor at a time (its multi-tensor path makes
    temporaries of every parameter's size at once, which is the memory it is chosen to save)."""
    if config.optimizer == "adafactor":
        return torch.optim.Adafactor(parameters, lr=config.lr, weight_decay=config.weight_decay, foreach=False)
    device = parameters[0].device
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay,
                             fused=device.type in ("cpu", "cuda"))


def warmup_cosine(warmup_steps: int, total_steps: int):
    """lr factor of optimizer step ``step`` (0-based): linear 0 -> 1 over the warm-up, cosine 1 -> 0 after."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def make_scheduler(optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, config.max_steps))


def apply_hyperparameters(optimizer, scheduler, config: TrainConfig) -> None:
    """Put --lr, --weight-decay and the schedule of ``config`` into an optimizer and scheduler whose states were
    loaded from a training state (those hold the values of the run that wrote it, which would win otherwise).
    With unchanged values this sets exactly what the states hold (the scheduler's own formula)."""
    scheduler.base_lrs = [config.lr for _ in optimizer.param_groups]
    scheduler.lr_lambdas = [warmup_cosine(config.warmup_steps, config.max_steps) for _ in optimizer.param_groups]
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["initial_lr"] = base
        group["lr"] = base * factor(scheduler.last_epoch)
        group["weight_decay"] = config.weight_decay
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports


def clip_gradients(parameters, max_norm: float) -> torch.Tensor:
    """Clip to ``max_norm`` (0 = no clipping); returns the global norm before clipping.

    The gradients are only rescaled when the norm is above ``max_norm`` (torch's ``clip_grad_norm_``
    multiplies them by a factor of 1 otherwise: one more pass over every gradient, 0.1 s per step
    for SDXL's 424M-parameter encoder on a CPU). A NaN or infinite norm leaves them as they are; the
    loop then skips the step."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if max_norm > 0 and bool(norm > max_norm):
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            g.mul_(scale)
    return norm


def autocast_dtype(precision: str, device: torch.device):
    """The autocast dtype for ``--precision`` on ``device``; None = plain fp32. On the CPU only an
    explicit ``bf16`` autocasts (about twice as fast on CPUs with bf16 instructions)."""
    if device.type != "cuda":
        return torch.bfloat16 if precision == "bf16" else None
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def make_grad_scaler(dtype, device: torch.device):
    """A gradient scaler for fp16 autocast (bf16 and fp32 need none: a disabled scaler)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
