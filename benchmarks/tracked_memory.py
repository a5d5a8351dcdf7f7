"""Live tensor bytes, tracked through the dispatcher: the memory a step needs, counted without running it.

Under ``fake()`` (PyTorch's ``FakeTensorMode``) every tensor has a shape, a dtype and a storage size but
no data, so a 1024 px SDXL training step goes through the real code (ComfyUI's UNet, the trainer's step,
autocast, checkpointing, the optimizer) in seconds and without its memory. ``LiveBytes`` sits above it as
a ``TorchDispatchMode``: every aten op's output storage is registered once (views share their base's) with
its size, and a ``weakref.finalize`` on the storage takes it off when the last tensor using it dies
(PyTorch keeps one Python object per storage while the storage lives, so the finalizer fires exactly when
the storage is freed). ``current`` is then the bytes of all live tensors (weights, gradients, optimizer
state, autocast's casts, what autograd saved for the backward pass, temporaries), ``peak`` its maximum,
checked after every op: what a GPU's caching allocator hands out for the same step, without its slack
(rounding to blocks, fragmentation), the CUDA context, and the workspaces kernels use inside one op.

Why this and not ``torch.distributed._tools.mem_tracker.MemTracker``: it accounts the same way (storages
through a dispatch mode, weak references) but rounds to CUDA's block sizes and keeps per-module
bookkeeping through module hooks that the trainer's checkpointing wrapper would make harder to read; a
page of our own accounting is checked directly against a tensor-by-tensor count in the tests.

Fake tensors have no values, but a step asks for some: which batch rows hold a subject word (``nonzero`` of
a token mask), a timestep. So a small fake tensor (up to ``VALUE_NUMEL`` elements) made from known values
(factories, real tensors, other known small tensors) keeps its real value beside it, computed by the same op
on real tensors, and ``nonzero`` / ``.item()`` of it answer from that. Of a large or derived tensor the value
is unknown: ``.item()``, ``bool(t)`` and ``float(t)`` (the trainer's finite checks of the loss and the
gradient norm) get ``SCALAR``, a finite placeholder, so every check passes as in a sound step; ``nonzero``
of it stops with PyTorch's error.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

SCALAR = 1.0  # what .item() of a fake tensor of unknown value gives: finite, true
VALUE_NUMEL = 1 << 16  # tensors up to this size made from known values keep their real value beside
VALUE_OPS = (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default)


class LiveBytes(TorchDispatchMode):
    """Bytes of the storages alive that ops made while the mode was on (or ``track``-ed), and their peak."""

    def __init__(self):
        super().__init__()
        self._values = WeakIdKeyDictionary()  # small fake tensor -> its real value
        self.current = 0
        self.peak = 0
        self._live: dict[int, int] = {}

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._live:
            return
        size = storage.nbytes()
        self._live[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._freed, key)

    def _freed(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def reset_peak(self) -> None:
        self.peak = self.current

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        fakes = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, fake_tensor_class())]
        known = all(t in self._values for t in fakes)
        if func in VALUE_OPS and fakes:
            if known:  # a small tensor's value is known: the real answer
                real = self._run_real(func, args, kwargs)
                if not isinstance(real, torch.Tensor):
                    return real
                out = torch.empty_strided(real.shape, real.stride(), dtype=real.dtype, device=fakes[0].device)
                self._values[out] = real
                self.track(out)
                return out
            if func is torch.ops.aten._local_scalar_dense.default:
                dtype = args[0].dtype
                return (SCALAR != 0) if dtype == torch.bool else SCALAR if dtype.is_floating_point else int(SCALAR)
        out = func(*args, **kwargs)
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        for t in outputs:
            self.track(t)
        if known and outputs and isinstance(outputs[0], fake_tensor_class()) and \
                sum(t.numel() for t in outputs) <= VALUE_NUMEL:  # keep the value alongside
            real = self._run_real(func, args, kwargs)
            for fake_out, real_out in zip(outputs, [t for t in tree_flatten(real)[0] if isinstance(t, torch.Tensor)]):
                self._values[fake_out] = real_out
        return out

    def _run_real(self, func, args, kwargs):
        """``func`` on the real values (small tensors: no fake mode, no autocast, no autograd)."""
        from torch.utils._python_dispatch import _disable_current_modes
        from torch.utils._pytree import tree_map

        real = tree_map(lambda t: self._values[t] if isinstance(t, fake_tensor_class()) else t, (args, kwargs))
        with _disable_current_modes(), torch.no_grad(), torch.autocast("cpu", enabled=False):
            return func(*real[0], **real[1])


def every_index(t: torch.Tensor) -> torch.Tensor:
    """``t.nonzero()`` of a ``t`` whose every element is nonzero (a fake tensor's values are unknown)."""
    grids = torch.meshgrid(*(torch.arange(n, device=t.device) for n in t.shape), indexing="ij")
    return torch.stack(grids, -1).reshape(-1, t.ndim) if t.ndim else torch.zeros(1, 0, dtype=torch.long)


def fake_tensor_class():
    from torch._subclasses.fake_tensor import FakeTensor

    return FakeTensor


@contextmanager
def fake(live: LiveBytes, mode=None):
    """Fake tensors (real tensors met inside become fake: images read from disk, the trainer's constants),
    with ``live`` counting every tensor made inside. ``mode``: a ``FakeTensorMode`` to enter again (tensors
    made in one mode cannot meet another's)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with (mode or FakeTensorMode(allow_non_fake_inputs=True)), live, unswapped_noop_conversions():
        yield live


@contextmanager
def unswapped_noop_conversions():
    """``module.float()`` / ``.to(device)`` on a module of fake parameters swaps each parameter with its
    converted copy (``torch.utils.swap_tensors``), which refuses tensors that FakeTensorMode references weakly,
    as it does every fake tensor it made. A conversion that changes nothing (the encoder is made in float32 on
    its device already) needs no swap: such a swap is skipped; any other still goes through and fails loudly."""
    original = torch.utils.swap_tensors

    def swap(t1, t2):
        if (t1.dtype, t1.device, t1.shape, t1.stride(), t1.storage_offset()) == \
                (t2.dtype, t2.device, t2.shape, t2.stride(), t2.storage_offset()) and \
                t1.untyped_storage()._cdata == t2.untyped_storage()._cdata:
            return
        original(t1, t2)

    torch.utils.swap_tensors = swap
    try:
        yield
    finally:
        torch.utils.swap_tensors = original


def tensor_bytes(tensors) -> int:
    """Bytes of distinct storages among ``tensors`` (a view counts with its base once)."""
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            s = t.untyped_storage()
            seen[s._cdata] = s.nbytes()
    return sum(seen.values())


@contextmanager
def cuda_autocast_norms():
    """CUDA's autocast runs ``group_norm`` and ``layer_norm`` in float32 (its float32 list) where the CPU's keeps
    bfloat16: under this, with autocast on, the two get float32 inputs and give float32 outputs, as on a GPU
    (the next matmul casts back to bf16, as autocast does there). The step then holds what it holds on CUDA;
    the CPU's policy is what ``--measure`` runs, so tracked and measured are compared without this."""
    import torch.nn.functional as F

    originals = {name: getattr(F, name) for name in ("group_norm", "layer_norm")}

    def in_float32(original):
        def norm(input, *args, **kwargs):
            if not (torch.is_autocast_enabled(input.device.type) and input.dtype in (torch.bfloat16, torch.float16)):
                return original(input, *args, **kwargs)
            cast = lambda t: t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t  # noqa: E731
            with torch.autocast(input.device.type, enabled=False):
                return original(cast(input), *map(cast, args), **{k: cast(v) for k, v in kwargs.items()})
        return norm

    for name, original in originals.items():
        setattr(F, name, in_float32(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(F, name, original)
