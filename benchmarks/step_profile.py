"""Where a training step's time goes: one step under the torch profiler, grouped by the step's parts.

The trainer marks its parts with ``nested_attention_core.profiling.scope`` (data, subject_encoder,
denoise, backward, gradients, optimizer, finite_check) and so does the attn2 patch (patch: the
host-side work of a layer; rule: the nested attention itself). The resampler and the nested
projections are marked here by module hooks. Each op's own CPU time goes to the innermost part
around it; a backward op goes to the part whose forward op created its autograd node (matched by
the profiler's sequence numbers), so "nested attention" shows forward and backward separately, and
the frozen UNet's backward shows under the frozen UNet.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..nested_attention_core.profiling import PREFIX

BACKWARD_NODE = "autograd::engine::evaluate_function"
# parts whose cost does not grow with the image's size (per step, or per reference image)
PER_IMAGE_PARTS = ("data", "resampler", "nested_projections", "subject_encoder", "gradients", "optimizer",
                   "finite_check", None)
PARTS = {  # scope name -> what the breakdown calls it, in the order of a step
    "data": "data and cache reads",
    "resampler": "subject encoder: resampler",
    "nested_projections": "subject encoder: nested projections",
    "subject_encoder": "subject encoder: rest",
    "denoise": "frozen UNet, loss, host conditioning",
    "patch": "attn2 patch: host-side work per layer",
    "rule": "nested attention (the rule)",
    "gradients": "gradient clipping",
    "optimizer": "optimizer step (AdamW)",
    "finite_check": "parameters finite check",
    "backward": "autograd engine, not matched to a part",
    None: "outside every part",
}


@dataclass
class Breakdown:
    forward_ms: dict  # part -> ms of its own ops outside backward
    backward_ms: dict  # part -> ms of the backward of its ops
    wall_ms: float  # the profiled step, as timed (the profiler slows it)

    def part_ms(self, part) -> float:
        return self.forward_ms.get(part, 0.0) + self.backward_ms.get(part, 0.0)

    def ratio(self, scale: float = 1.0) -> float:
        """(step) / (its frozen UNet part), with the image's pixels times ``scale``: the parts that do not
        depend on the image (the optimizer and clipping, the finite check, the subject encoder, the data)
        kept, the others (the frozen UNet, the attn2 patch and the nested attention, the autograd
        engine) times ``scale``. An upper bound at scale > 1 for the nested attention, whose per-call
        overhead does not grow with the image."""
        per_image = sum(self.part_ms(p) for p in PER_IMAGE_PARTS)
        per_pixel = sum(self.part_ms(p) for p in PARTS if p not in PER_IMAGE_PARTS and p != "denoise")
        return 1 + (per_image + scale * per_pixel) / (scale * self.part_ms("denoise"))

    def print(self, title: str) -> None:
        total = sum(self.forward_ms.values()) + sum(self.backward_ms.values())
        print(f"\n{title}: one profiled step, {self.wall_ms:.0f} ms wall under the profiler")
        print(f"  {'part':<42}{'forward ms':>11}{'backward ms':>12}{'share':>8}")
        for part, label in PARTS.items():
            fwd, bwd = self.forward_ms.get(part, 0.0), self.backward_ms.get(part, 0.0)
            if fwd + bwd >= 0.05:
                print(f"  {label:<42}{fwd:>11.1f}{bwd:>12.1f}{(fwd + bwd) / total:>8.1%}")


def _hook_scopes(modules: dict) -> list:
    """A profiler range around every forward of each module: {scope name: [modules]}."""
    from torch.profiler import record_function

    handles = []
    for name, group in modules.items():
        for module in group:
            open_ranges = []

            def enter(_module, _args, name=name, open_ranges=open_ranges):
                open_ranges.append(record_function(PREFIX + name))
                open_ranges[-1].__enter__()

            def leave(_module, _args, _out, open_ranges=open_ranges):
                open_ranges.pop().__exit__(None, None, None)

            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return handles


def _part(event) -> str | None:
    while event is not None:
        if event.name.startswith(PREFIX):
            return event.name[len(PREFIX):]
        event = event.cpu_parent
    return None


def _backward_node(event):
    while event is not None:
        if event.name.startswith(BACKWARD_NODE):
            return event
        event = event.cpu_parent
    return None


def profile_step(step, modules: dict) -> Breakdown:
    """Run ``step()`` once under the profiler; ``modules``: {scope name: [nn.Module]} to mark."""
    import torch

    handles = _hook_scopes(modules)
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            start = time.perf_counter()
            step()
            wall_ms = (time.perf_counter() - start) * 1e3
    finally:
        for handle in handles:
            handle.remove()
    events = profiler.events()
    origin = {}  # forward sequence number -> part
    for event in events:
        if event.sequence_nr >= 0 and _backward_node(event) is None:
            origin.setdefault(event.sequence_nr, _part(event))
    forward, backward = {}, {}
    for event in events:
        node = _backward_node(event)
        own_ms = event.self_cpu_time_total / 1e3
        if node is None:
            part = _part(event)
            into = backward if part == "backward" else forward  # the engine's own work between nodes
            into[part] = into.get(part, 0.0) + own_ms
        else:
            part = origin.get(node.sequence_nr, "backward")
            backward[part] = backward.get(part, 0.0) + own_ms
    return Breakdown(forward, backward, wall_ms)
