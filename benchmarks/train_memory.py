"""Peak memory of a real SDXL-architecture training step, with and without gradient checkpointing: tracked on
fake tensors at any size, measured where this machine can run it, and the two compared.

    python -m nested_attention.benchmarks.train_memory [--sizes 256,512,1024]            (make bench-memory)
    python -m nested_attention.benchmarks.train_memory --measure [--sizes 128,192,256] [--adafactor-size PX]
    python -m nested_attention.benchmarks.train_memory --validate [--family sd15] --sizes 384,512

Every case runs the real trainer (``training/``: session, data folder, the loop's ``optimizer_step``) on
ComfyUI's own UNet (SDXL: 2.57B parameters, 70 cross-attention layers; or SD1.5 with ``--family sd15``;
seeded random weights: ``architectures.py``) made directly in bf16, as the trainer loads it on a GPU, with
the family's default encoder (SDXL: 424M parameters, float32), bf16 autocast (``--precision bf16``), batch 1,
PyTorch's SDPA attention (the one ComfyUI uses on NVIDIA GPUs; on the CPU it would pick its sub-quadratic
attention, whose backward keeps every chunk's scores). Options: AdamW, AdamW with ``--gradient-checkpointing``,
Adafactor with it. A first step makes the optimizer state; the next one is the one counted.

**Tracked** (the default): the same code on fake tensors (``tracked_memory.py``): shapes, dtypes and storage
sizes without data, so the 1024 px step takes a minute and no memory. Its figure is the peak of live tensor
bytes during the step (weights, gradients, optimizer state, autocast's casts, saved activations,
temporaries), labelled "tracked on fake tensors (not run)", never "measured". By default the norms run in
float32 under autocast as CUDA's autocast runs them (``tracked_memory.cuda_autocast_norms``; the CPU keeps
them in bf16: ``--cpu-autocast``). A GPU adds its CUDA context (about 0.5 GB, added in the table) and its
caching allocator's slack (not counted). The last line is ``RESULT sdxl_1024_peak_gb=<AdamW>
sdxl_1024_peak_gb_ckpt=<AdamW, checkpointing> sdxl_1024_peak_gb_ckpt_adafactor=<Adafactor, checkpointing>
tracked=1`` (live tensor bytes, without the CUDA context).

**Measured** (``--measure``): a fresh process (the UNet built once) runs the real steps on this CPU. What is
measured: the process's peak resident memory during a warm step (feature cache warm; VmHWM after a reset,
``/proc/self/clear_refs``) minus its resident memory right after importing torch and ComfyUI, before any
model exists (a case's memory before its step, printed, shows that the previous case left nothing behind).
glibc is told to serve every allocation over 64 KiB with its own mapping (``MALLOC_MMAP_THRESHOLD_``), so
freed tensors leave the resident set at once and the peak is that of live tensors plus the process's other
memory, not of the allocator's free lists. The weights, gradients and optimizer state are also counted from
the tensors themselves and printed. 1024 px is measured where a case asks for it, else extrapolated from
the measured sizes (least squares, linear in the number of pixels) when the peak grows over them, labelled
so; at 128-256 px SDXL's peak does not grow (the activations stay below the fixed part) and nothing is
extrapolated. ``--validate`` measures and tracks the same cases (CPU autocast both) and prints them side by
side.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .timing import load_average, machine, peak_memory_bytes, peak_memory_reset

DEFAULT_SIZES = "128,192,256"
TRACKED_SIZES = "256,512,1024"
TARGET = 1024
GB = 1e9
MMAP_THRESHOLD = 65536
FLAT_GB = 0.25  # peaks that grow less than this over the sizes measured show no activations to extrapolate


def resident_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def optimizer_state_bytes(optimizer) -> int:
    import torch

    return tensor_bytes(v for state in optimizer.state.values() for v in state.values()
                        if isinstance(v, torch.Tensor))


def measure(sizes: list[int], adafactor_size: int, threads: int, family: str = "sdxl") -> list[dict]:
    """Every case in this one process, the UNet built once: per size a session with AdamW whose first step
    (cold cache) makes the optimizer state, then one warm step without and one with checkpointing (the
    session's denoiser swapped); then a session with Adafactor at ``adafactor_size``, warm step with
    checkpointing. Each case's peak is over its own warm step."""
    from ..training.bootstrap import bootstrap_comfy

    bootstrap_comfy()
    import comfy.cli_args

    comfy.cli_args.args.use_pytorch_cross_attention = True  # the attention ComfyUI runs on NVIDIA GPUs
    import torch

    torch.set_num_threads(threads)
    import comfy.model_management  # noqa: F401  (everything imported before the baseline)
    from ..training.config import TrainConfig
    from ..training.loop import optimizer_step
    from ..training.session import open_session
    from ..training.step import Denoiser
    from .train_step import base_models, write_data

    gc.collect()
    baseline = resident_bytes()
    started = time.perf_counter()
    models, checkpoint, clip_vision, _ = base_models(family, dtype=torch.bfloat16)
    build_s = time.perf_counter() - started
    unet = models.patcher.model.diffusion_model
    gc.collect()
    # what the process holds beyond the UNet's weights once the models exist (the tokenizer's checkpoint, with its
    # text encoder; Python objects; libraries' buffers): no tensor of the step, but resident
    models_other = resident_bytes() - baseline - tensor_bytes(unet.parameters())
    results = []
    plan = [(size, "adamw", (False, True)) for size in sizes] + [(adafactor_size, "adafactor", (True,))]
    with tempfile.TemporaryDirectory(prefix="nested_attention_memory_") as tmp:
        tmp = Path(tmp)
        data = write_data(tmp / "data", 2, 1)
        for size, optimizer, settings in plan:
            config = TrainConfig(checkpoint=str(checkpoint), clip_vision=str(clip_vision), data=str(data),
                                 output=str(tmp / "out"), cache_dir=str(tmp / f"cache{size}"), resolution=size,
                                 batch_size=1, max_steps=10 ** 6, warmup_steps=0, sample_every=0, progress_bar=False,
                                 drop_text=0.0, drop_subject=0.0, drop_both=0.0, precision="bf16",
                                 optimizer=optimizer)
            session = open_session(config, models=models)
            session.denoiser = Denoiser(models.patcher, session.method.rule, gradient_checkpointing=settings[0])
            optimizer_step(session, 0)  # cold cache; the optimizer state is made
            for step, checkpointing in enumerate(settings, start=1):
                session.denoiser = Denoiser(models.patcher, session.method.rule, checkpointing)
                gc.collect()
                before = resident_bytes()
                peak_memory_reset()
                step_started = time.perf_counter()
                loss, _, _, finite = optimizer_step(session, step)  # warm cache: the step measured
                step_s = time.perf_counter() - step_started
                peak = peak_memory_bytes()
                results.append({
                    "family": family, "resolution": size, "checkpointing": checkpointing, "optimizer": optimizer,
                    "peak": peak - baseline, "before_step": before - baseline, "baseline": baseline,
                    "unet_weights": tensor_bytes(unet.parameters()), "unet_dtype": str(next(unet.parameters()).dtype),
                    "encoder_weights": tensor_bytes(session.encoder.parameters()),
                    "gradients": tensor_bytes(p.grad for p in session.parameters if p.grad is not None),
                    "optimizer_state": optimizer_state_bytes(session.optimizer),
                    "attention": comfy.model_management.pytorch_attention_enabled(), "finite": finite,
                    "loss": loss, "build_s": build_s, "step_s": step_s, "models_other": models_other})
                print(f"  {family} {size} px, {optimizer}, checkpointing {'on' if checkpointing else 'off'}: peak "
                      f"{(peak - baseline) / GB:.2f} GB above the imports ({baseline / GB:.2f} GB), "
                      f"{(before - baseline) / GB:.2f} GB before the step; step {step_s:.0f} s", flush=True)
            del session
            gc.collect()
    return results


def tracked(family: str, sizes: list[int], plan: list[tuple[str, bool]], threads: int,
            cuda_norms: bool = True) -> list[dict]:
    """The same cases as ``measure`` (the real trainer, ComfyUI's UNet of ``family`` made in bf16, the default
    encoder, bf16 autocast, SDPA attention, batch 1) on fake tensors (``tracked_memory``): nothing is computed
    and nothing but shapes is held, so any size runs in seconds. Per size and (optimizer, checkpointing) a
    session whose first step makes the optimizer state, then one step tracked: its peak of live tensor bytes
    minus nothing (every tensor made since the UNet is counted, the UNet's weights included). Features come
    from the stand-ins at every step (no cache folder: fake tensors cannot be written), a few MB each."""
    from ..training.bootstrap import bootstrap_comfy

    bootstrap_comfy()
    import comfy.cli_args

    comfy.cli_args.args.use_pytorch_cross_attention = True
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    torch.set_num_threads(threads)
    import comfy.model_management  # noqa: F401
    from ..training.config import TrainConfig
    from ..training.loop import optimizer_step
    from ..training.session import open_session
    from ..training.step import Denoiser
    from .architectures import random_weights_model
    from .tracked_memory import LiveBytes, cuda_autocast_norms, fake
    from .train_step import base_models, write_data

    live, mode = LiveBytes(), FakeTensorMode(allow_non_fake_inputs=True)

    def build(case, dtype):
        with fake(live, mode):
            return random_weights_model(case, dtype=dtype)

    models, checkpoint, clip_vision, _ = base_models(family, torch.bfloat16, build)
    unet = models.patcher.model.diffusion_model
    results = []
    with tempfile.TemporaryDirectory(prefix="nested_attention_tracked_") as tmp:
        tmp = Path(tmp)
        data = write_data(tmp / "data", 2, 1)
        for size in sizes:
            for optimizer, checkpointing in plan:
                config = TrainConfig(checkpoint=str(checkpoint), clip_vision=str(clip_vision), data=str(data),
                                     output=str(tmp / "out"), cache=False, resolution=size, batch_size=1,
                                     max_steps=10 ** 6, warmup_steps=0, sample_every=0, progress_bar=False,
                                     drop_text=0.0, drop_subject=0.0, drop_both=0.0, precision="bf16",
                                     optimizer=optimizer)
                started = time.perf_counter()
                with fake(live, mode), (cuda_autocast_norms() if cuda_norms else contextlib.nullcontext()):
                    session = open_session(config, models=models)
                    session.denoiser = Denoiser(models.patcher, session.method.rule, checkpointing)
                    optimizer_step(session, 0)  # the optimizer state is made
                    gc.collect()
                    before = live.current
                    live.reset_peak()
                    optimizer_step(session, 1)  # the step tracked
                    gc.collect()
                    after = live.current
                results.append({
                    "family": family, "resolution": size, "checkpointing": checkpointing, "optimizer": optimizer,
                    "peak": live.peak, "before_step": before, "after_step": after, "cuda_norms": cuda_norms,
                    "unet_weights": tensor_bytes(unet.parameters()), "unet_dtype": str(next(unet.parameters()).dtype),
                    "encoder_weights": tensor_bytes(session.encoder.parameters()),
                    "gradients": tensor_bytes(p.grad for p in session.parameters if p.grad is not None),
                    "optimizer_state": optimizer_state_bytes(session.optimizer),
                    "attention": comfy.model_management.pytorch_attention_enabled(), "finite": True, "loss": None,
                    "build_s": 0.0, "step_s": time.perf_counter() - started})
                print(f"  {family} {size} px, {optimizer}, checkpointing {'on' if checkpointing else 'off'}: peak "
                      f"{live.peak / GB:.2f} GB tracked on fake tensors (not run), {before / GB:.2f} GB before the "
                      f"step ({time.perf_counter() - started:.0f} s)", flush=True)
                del session
                gc.collect()
    return results


def fit(points: list[tuple[int, float]]):
    """Least squares peak = a + b * pixels; (a, b, largest residual)."""
    xs = [r * r for r, _ in points]
    ys = [y for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    return a, b, max(abs(y - (a + b * x)) for x, y in zip(xs, ys))


def fixed_bytes(r: dict) -> int:
    return r["unet_weights"] + r["encoder_weights"] + r["gradients"] + r["optimizer_state"]


def report(results: list[dict]) -> dict:
    print(f"\n{'px':>5} {'ckpt':>4} {'optimizer':>9} | {'peak GB':>8} | {'UNet bf16':>9} {'encoder':>8} {'grads':>6} "
          f"{'opt state':>9} {'activations+rest':>16} | {'step s':>6}")
    for r in sorted(results, key=lambda r: (r["optimizer"], r["checkpointing"], r["resolution"])):
        print(f"{r['resolution']:>5} {'on' if r['checkpointing'] else 'off':>4} {r['optimizer']:>9} | "
              f"{r['peak'] / GB:8.2f} | {r['unet_weights'] / GB:9.2f} {r['encoder_weights'] / GB:8.2f} "
              f"{r['gradients'] / GB:6.2f} {r['optimizer_state'] / GB:9.3f} {(r['peak'] - fixed_bytes(r)) / GB:16.2f} | "
              f"{r['step_s']:6.1f}")
    at_target = {}
    for optimizer in ("adamw", "adafactor"):
        for checkpointing in (False, True):
            name = f"{optimizer}, checkpointing {'on' if checkpointing else 'off'}"
            mine = [r for r in results if r["optimizer"] == optimizer and r["checkpointing"] == checkpointing]
            measured = [r for r in mine if r["resolution"] == TARGET]
            if measured:
                at_target[(optimizer, checkpointing)] = (measured[0]["peak"] / GB, "measured")
                continue
            # the activations grow with the pixels; the fixed part (weights, gradients, optimizer state) does
            # not: fit the setting's own sizes, or the other optimizer's at the same setting with this one's
            # fixed part
            sizes = mine if len(mine) >= 3 else [r for r in results if r["checkpointing"] == checkpointing]
            sizes = [r for r in sizes if r["optimizer"] == sizes[0]["optimizer"]] if sizes else []
            if len({r["resolution"] for r in sizes}) < 3 or not mine:
                continue
            ordered = sorted(sizes, key=lambda r: r["resolution"])
            growth = (ordered[-1]["peak"] - ordered[0]["peak"]) / GB
            if growth < FLAT_GB:  # a fit through the fixed part's plateau would say nothing about the activations
                print(f"  {name}: the peak is flat from {ordered[0]['resolution']} to {ordered[-1]['resolution']} px "
                      f"({growth:+.2f} GB): it is the fixed part's (weights, gradients, optimizer state and the "
                      "optimizer step's temporaries), the activations stay below it; no extrapolation: measure "
                      "larger --sizes")
                continue
            a, b, residual = fit([(r["resolution"], (r["peak"] - fixed_bytes(r)) / GB) for r in sizes])
            fixed = fixed_bytes(mine[0]) / GB
            value = fixed + a + b * TARGET ** 2
            source = (f"extrapolated from {'/'.join(str(r['resolution']) for r in sorted(sizes, key=lambda r: r['resolution']))} px "
                      f"({sizes[0]['optimizer']}), linear in pixels, fit residual {residual:.2f} GB")
            at_target[(optimizer, checkpointing)] = (value, source)
            print(f"  {name}: activations+rest = {a:.2f} GB + {b * 1e6:.3f} GB per megapixel")
    print(f"\nSDXL {TARGET} px, batch 1, bf16:")
    for (optimizer, checkpointing), (value, source) in sorted(at_target.items()):
        fits = ", ".join(f"{g} GB {'yes' if value <= g else 'no'}" for g in (24, 48, 80))
        print(f"  {optimizer:>9}, checkpointing {'on ' if checkpointing else 'off'}: {value:6.1f} GB ({source}); "
              f"fits {fits}")
    return at_target


OPTIONS = (("adamw", False), ("adamw", True), ("adafactor", True))
OPTION_NAMES = {("adamw", False): "AdamW", ("adamw", True): "AdamW, checkpointing",
                ("adafactor", True): "Adafactor, checkpointing", ("adafactor", False): "Adafactor"}
RESULT_KEYS = {("adamw", False): "sdxl_1024_peak_gb", ("adamw", True): "sdxl_1024_peak_gb_ckpt",
               ("adafactor", True): "sdxl_1024_peak_gb_ckpt_adafactor"}
CUDA_CONTEXT_GB = 0.5
CARDS_GB = (24, 48, 80)


def report_tracked(results: list[dict]) -> dict:
    """The tracked peaks per size and option, the fixed part beside them; what fits which card."""
    print(f"\n{'px':>5} {'option':<26} | {'peak GB':>8} {'fixed GB':>8} {'activations+rest':>16} | "
          f"{'+CUDA context':>13} | " + " ".join(f"{g:>3} GB" for g in CARDS_GB))
    for r in sorted(results, key=lambda r: (r["resolution"], OPTIONS.index((r["optimizer"], r["checkpointing"])))):
        with_context = r["peak"] / GB + CUDA_CONTEXT_GB
        print(f"{r['resolution']:>5} {OPTION_NAMES[(r['optimizer'], r['checkpointing'])]:<26} | {r['peak'] / GB:8.2f} "
              f"{fixed_bytes(r) / GB:8.2f} {(r['peak'] - fixed_bytes(r)) / GB:16.2f} | {with_context:13.2f} | "
              + " ".join(f"{'yes' if with_context <= g else 'no':>6}" for g in CARDS_GB))
    return {(r["optimizer"], r["checkpointing"]): r["peak"] / GB for r in results if r["resolution"] == TARGET}


def report_validation(measured: list[dict], tracked_results: list[dict]) -> None:
    """Measured (resident memory of a real step) and tracked (fake tensors) side by side."""
    key = lambda r: (r["family"], r["resolution"], r["optimizer"], r["checkpointing"])  # noqa: E731
    tracked_by = {key(r): r for r in tracked_results}
    print(f"\n{'family':>6} {'px':>5} {'option':<26} | {'measured peak':>13} {'tracked peak':>12} {'diff':>6} | "
          f"{'measured before':>15} {'tracked before':>14} | {'measured act+rest':>17} {'tracked act+rest':>16} | "
          f"{'non-tensor':>11} {'measured-that':>13} {'diff':>6} | {'measured step':>14} {'tracked step':>13}")
    print("(non-tensor: the measured process's resident memory beyond the UNet's weights once the models exist, "
          "before any session: the tokenizer's checkpoint, Python objects, libraries; the tracked step does not "
          "hold it. step: the peak minus the memory before the step, what the step itself adds)")
    for m in sorted(measured, key=key):
        t = tracked_by.get(key(m))
        if t is None:
            continue
        other = m["models_other"]
        print(f"{m['family']:>6} {m['resolution']:>5} {OPTION_NAMES[(m['optimizer'], m['checkpointing'])]:<26} | "
              f"{m['peak'] / GB:13.2f} {t['peak'] / GB:12.2f} {100 * (t['peak'] / m['peak'] - 1):+5.1f}% | "
              f"{m['before_step'] / GB:15.2f} {t['before_step'] / GB:14.2f} | "
              f"{(m['peak'] - fixed_bytes(m)) / GB:17.2f} {(t['peak'] - fixed_bytes(t)) / GB:16.2f} | "
              f"{other / GB:11.2f} {(m['peak'] - other) / GB:13.2f} "
              f"{100 * (t['peak'] / (m['peak'] - other) - 1):+5.1f}% | "
              f"{(m['peak'] - m['before_step']) / GB:14.2f} {(t['peak'] - t['before_step']) / GB:13.2f}")


def measured_in_child(args) -> list[dict]:
    """``measure`` in a fresh process whose glibc returns freed tensors at once (see the module's text)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, "-m", __spec__.name, "--sizes", args.sizes, "--threads", str(args.threads),
                   "--family", args.family, "--case-json", out.name]
        if args.adafactor_size:
            command += ["--adafactor-size", str(args.adafactor_size)]
        subprocess.run(command, check=True, env=env)
        results = json.loads(Path(out.name).read_text())
    for r in results:
        assert r["attention"] and r["finite"] and r["unet_dtype"] == "torch.bfloat16", r
    print(f"  the UNet built in {results[0]['build_s']:.0f} s")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--measure", action="store_true",
                      help="run the real steps and measure their resident memory (about 13 GB of RAM for SDXL and "
                           "minutes per step on a CPU) instead of tracking them on fake tensors")
    mode.add_argument("--validate", action="store_true",
                      help="both at the same --sizes: measured and tracked side by side")
    parser.add_argument("--family", choices=("sdxl", "sd15"), default="sdxl", help="the UNet's architecture")
    parser.add_argument("--sizes", default=None,
                        help=f"image sizes in px (default: tracked {TRACKED_SIZES}, measured {DEFAULT_SIZES}); "
                             "measured: AdamW without and with checkpointing at each, Adafactor with checkpointing at "
                             "--adafactor-size; tracked: all three options at each")
    parser.add_argument("--adafactor-size", type=int, default=None,
                        help="size of the measured Adafactor case (with checkpointing); default the largest of --sizes")
    parser.add_argument("--cpu-autocast", action="store_true",
                        help="tracked: keep the CPU's autocast policy (norms in bf16) instead of CUDA's (norms in "
                             "float32, what a GPU holds)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads")
    parser.add_argument("--case-json", help=argparse.SUPPRESS)  # internal: measure in this process, write here
    args = parser.parse_args(argv)
    args.sizes = args.sizes or (DEFAULT_SIZES if args.measure or args.validate else TRACKED_SIZES)
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.case_json:
        results = measure(sizes, args.adafactor_size or max(sizes), args.threads, args.family)
        Path(args.case_json).write_text(json.dumps(results))
        return 0

    name = {"sdxl": "SDXL", "sd15": "SD1.5"}[args.family]
    print(f"Nested Attention training step, {name} architecture: peak memory (bf16, batch 1, default encoder, "
          "SDPA attention)")
    print(f"machine: {machine(args.threads)}; load average {load_average()}")
    if args.measure:
        results = measured_in_child(args)
        at_target = report(results)
        print(f"\nload average at the end {load_average()}")
        if args.family == "sdxl" and all(k in at_target for k in RESULT_KEYS):
            print("RESULT " + " ".join(f"{n}={at_target[k][0]:.1f}" for k, n in RESULT_KEYS.items()))
            return 0
        print("no RESULT: 1024 px is neither measured nor extrapolable from these sizes for every setting (see above)")
        return 1
    if args.validate:
        measured = measured_in_child(args)
        plan = sorted({(r["optimizer"], r["checkpointing"]) for r in measured}, key=OPTIONS.index)
        tracked_results = tracked(args.family, sorted({r["resolution"] for r in measured}), plan, args.threads,
                                  cuda_norms=False)  # the CPU's autocast, as measured
        report_validation(measured, tracked_results)
        print(f"\nload average at the end {load_average()}")
        return 0
    results = tracked(args.family, sizes, list(OPTIONS), args.threads, cuda_norms=not args.cpu_autocast)
    print(f"\npeaks tracked on fake tensors (not run): live tensor bytes of the whole step; a GPU adds its CUDA "
          f"context (about {CUDA_CONTEXT_GB} GB, added in the column) and its allocator's slack (not counted)")
    at_target = report_tracked(results)
    print(f"\nload average at the end {load_average()}")
    if args.family == "sdxl" and all(k in at_target for k in RESULT_KEYS):
        print(f"{name} {TARGET} px, batch 1, bf16: tracked on fake tensors (not run), without CUDA context and slack")
        print("RESULT " + " ".join(f"{n}={at_target[k]:.2f}" for k, n in RESULT_KEYS.items()) + " tracked=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
