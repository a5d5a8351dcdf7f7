"""Several processes (``torchrun``): process group, the data each rank trains on, gradient averaging.

Each rank trains on its share of every global batch: ``torch.utils.data.DistributedSampler`` splits
the epoch's shuffled order (interleaved, incomplete tail dropped). A rank's j-th sample is global
position ``j * world + rank`` of the order, and everything random about a sample is seeded by that
position (batch.py), so N processes with batch B train exactly like one process with batch N*B, up
to the order of floating-point sums. Gradients are averaged by one all-reduce per optimizer step
(after accumulation); a parameter without gradient takes part with zeros. Only rank 0
writes files. Backend: nccl on CUDA, gloo on the CPU.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from .errors import TrainingConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_ranks() -> DistContext:
    """Rank, world size and local rank as torchrun sets them (one process otherwise)."""
    return DistContext(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                       int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(use_cuda: bool) -> DistContext:
    ctx = launched_ranks()
    if ctx.active and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return ctx


def shutdown(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def average_gradients(parameters, ctx: DistContext) -> None:
    """Mean of every parameter's gradient over the ranks (every parameter must have one)."""
    if not ctx.active:
        return
    params = list(parameters)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def all_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.active:
        value = value.clone()
        dist.all_reduce(value)
        value /= ctx.world_size
    return value


def any_rank(flag: bool, ctx: DistContext, device) -> bool:
    """True on every rank if ``flag`` is True on some rank."""
    if not ctx.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_module(module: torch.nn.Module, ctx: DistContext) -> None:
    """Rank 0's parameters on every rank."""
    if ctx.active:
        for t in module.state_dict().values():
            dist.broadcast(t, src=0)


class DataOrder:
    """Micro-batch k of this rank: [(image index, global position)], epoch after epoch."""

    def __init__(self, n_images: int, batch_size: int, ctx: DistContext, seed: int):
        self.n, self.batch_size, self.ctx, self.seed = n_images, batch_size, ctx, seed
        self.micro_per_epoch = (n_images // ctx.world_size) // batch_size
        if self.micro_per_epoch == 0:
            raise TrainingConfigError(
                f"--batch-size {batch_size} x {ctx.world_size} process(es) = {batch_size * ctx.world_size} images per "
                f"micro-batch, but the data folder has only {n_images} usable images: lower --batch-size (or the "
                "number of processes), or add images")
        self._cache: tuple[int, list[int]] | None = None

    def _epoch(self, epoch: int) -> list[int]:
        if self._cache is None or self._cache[0] != epoch:
            sampler = DistributedSampler(range(self.n), num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                         shuffle=True, seed=self.seed, drop_last=True)
            sampler.set_epoch(epoch)
            self._cache = (epoch, list(sampler))
        return self._cache[1]

    def micro_batch(self, k: int) -> tuple[int, list[tuple[int, int]]]:
        epoch, i = divmod(k, self.micro_per_epoch)
        local = self._epoch(epoch)
        rows = range(i * self.batch_size, (i + 1) * self.batch_size)
        return epoch, [(local[j], j * self.ctx.world_size + self.ctx.rank) for j in rows]
