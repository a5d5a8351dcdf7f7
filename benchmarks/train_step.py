"""What a training step costs beyond the frozen UNet, where that goes, and what the feature cache saves.

    python -m nested_attention.benchmarks.train_step [--cases tiny,sdxl,sd15] [--sdxl-size PX] [--repeats N]

Three cases, each in its own process (one full-size UNet in memory at a time), all running the
real trainer (``training/``: session, data folder, feature cache, the loop's ``optimizer_step``):

* ``tiny``: the tiny SD1.5 test checkpoint (tests/harness/tiny_models.py: a one-level UNet at SD1.5's
  widths, 4 cross-attention layers, real CLIP-L, TAESD-shaped VAE; tiny CLIP vision), 128 px,
  batch 4, an encoder scaled to it as IP-Adapter Plus is to SD1.5 (16 tokens, width 128, depth 2).
  Also the cache: samples/s of an epoch with the cache warm over the same epoch cold (median of 9,
  each cold epoch on a new cache folder). And ``--gradient-checkpointing``: the step with it against
  the frozen UNet's forward + backward checkpointed the same way (``ckpt_train_step_overhead``), and
  that checkpointed UNet against the plain one (``ckpt_recompute_cost``: what the recomputation adds).
* ``sdxl``: ComfyUI's own SDXL architecture (2.57B parameters, 70 cross-attention layers, seeded
  random weights: ``architectures.py``), batch 1 at ``--sdxl-size`` px (256 by default: training it
  at 1024 px needs more memory and time than a 2-core CPU has), the encoder a user gets for SDXL
  (the family default, IP-Adapter Plus SDXL's sizes: 16 tokens, width 1280, depth 4, on ViT-H's
  1280-wide features; 424M parameters, 341M of them the 70 layers' nested projections).
* ``sd15`` (only with ``--cases``: about 10 more minutes): ComfyUI's SD1.5 architecture (860M, 16
  layers) at 512 px, batch 1, its default encoder (IP-Adapter Plus SD1.5's sizes).

No classifier-free-guidance drops: every row of every step trains its subject (a step whose rows all
dropped the subject has no backward, and would make the timings swing from step to step).
The full-size cases take their cached features from stand-ins of the real shapes (``feature_standins.py``;
a warm step never calls the frozen encoders). fp32 on the CPU.

* ``..._overhead``: median over pairs of interleaved rounds (one of each order:
  ``timing.order_balanced_ratios``) of (whole training step, cache warm) / (the frozen
  UNet's forward + backward alone: the same batch through the same ``apply_model`` without the
  subject, a zero added to every cross-attention layer's output by the host's ``attn2_output_patch``
  so that the backward runs from the loss to every attn2 layer, as the nested values' gradients do,
  and computes nothing else).
  A round during which other processes used the CPUs is run again (``timing.LoadGuard``).
* the breakdown: one step under the torch profiler, its time by part (``step_profile.py``).

The last line is ``RESULT train_step_overhead=<tiny> sdxl_train_step_overhead=<sdxl> cache_speedup=<x>
ckpt_train_step_overhead=<tiny, checkpointed> ckpt_recompute_cost=<tiny>`` (without the sdxl figure when
``--cases tiny`` runs alone: the checkpointing cost in a few minutes);
when a case's spread (the interquartile range of its order-balanced ratios) is larger than its
overhead, no RESULT is printed (exit 1).
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from .timing import (LoadGuard, add_timing_arguments, interleaved, load_average, machine, order_balanced_ratios,
                     peak_memory_bytes, peak_memory_reset)

SUBJECTS = {"alice": "woman", "bob": "man", "rex": "dog", "tom": "cat"}
TINY_ENCODER = {"num_tokens": 16, "encoder_width": 128, "encoder_depth": 2, "encoder_heads": 2,
                "encoder_dim_head": 64, "encoder_ff_mult": 4}
CASES = {  # name -> (images per subject, subjects, default resolution, batch)
    "tiny": (4, 4, 128, 4),  # 16 images: a 4-step epoch, long enough to time the cache
    "sdxl": (1, 2, 256, 1),
    "sd15": (1, 2, 512, 1),
}
POOLED = {"sd15": None, "sdxl": 1280}
TINY_ROUNDS_FACTOR = 3
CACHE_ROUNDS = 9  # cold / warm epochs of the tiny case, each cold one on a new cache folder


def write_data(root: Path, subjects: int, per_subject: int) -> Path:
    import numpy as np
    from PIL import Image, ImageDraw

    chosen = dict(list(SUBJECTS.items())[:subjects])
    for s, (name, word) in enumerate(chosen.items()):
        (root / name).mkdir(parents=True)
        for i in range(per_subject):
            rng = np.random.default_rng(s * 10 + i)
            image = Image.fromarray((rng.random((144, 160, 3)) * 90 + 80).astype(np.uint8))
            ImageDraw.Draw(image).ellipse([20 + 10 * i, 20, 100, 120], fill=(60 * s % 255, 200 - 40 * s, 90))
            image.save(root / name / f"{i}.png")
            (root / name / f"{i}.txt").write_text(f"a photo of a {word}, view {i}, number {s * 10 + i}")
    (root / "subjects.json").write_text(json.dumps(chosen))
    return root


def base_models(case: str, dtype=None, build_unet=None):
    """(BaseModels, checkpoint path, CLIP vision path, encoder flags) of a case (full-size UNets in fp32, or
    ``dtype``; ``build_unet(family, dtype)`` makes the patcher, ``architectures.random_weights_model`` by
    default)."""
    from ..nodes import host
    from harness import tiny_comfy, tiny_models
    from ..training.base_models import BaseModels, load_base_models
    from ..training.config import TrainConfig

    tiny_comfy.register_test_models()
    files = tiny_models.write_tiny_models(tiny_models.default_models_dir())
    if case == "tiny":
        config = TrainConfig(checkpoint=str(files["sd15"]), clip_vision=str(files["clip_vision"]), data=".", output=".")
        return load_base_models(config), files["sd15"], files["clip_vision"], TINY_ENCODER
    from .architectures import random_weights_model
    from .feature_standins import VIT_H_WIDTH, StandInClip, StandInClipVision, StandInVAE

    import comfy.sd

    # the family's real tokenizer, from the tiny checkpoint of the same family
    _, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(files[case]), output_vae=False, output_clip=True)
    patcher = (build_unet or random_weights_model)(case, dtype=dtype)
    family = host.model_family(patcher)
    models = BaseModels(patcher, StandInClip(clip, family.context_dim, POOLED[case]), StandInVAE(),
                        StandInClipVision(), files[case], files["clip_vision"], family, VIT_H_WIDTH)
    return models, files[case], files["clip_vision"], {}


def minor_page_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def spread(ratios: list[float]) -> float:
    """The interquartile range of the per-round ratios (one slow round on a shared machine does not
    decide it; with fewer than 4 rounds, max - min)."""
    if len(ratios) < 4:
        return max(ratios) - min(ratios)
    quartiles = statistics.quantiles(ratios, n=4)
    return quartiles[2] - quartiles[0]


def epoch_rate(session, steps: int) -> float:
    """samples/s of one epoch of training steps."""
    from ..training.loop import optimizer_step

    start = time.perf_counter()
    for step in range(steps):
        optimizer_step(session, step)
    return steps * session.config.batch_size / (time.perf_counter() - start)


def run_case(case: str, args) -> dict:
    import torch

    from ..training.batch import assemble
    from ..training.config import TrainConfig
    from ..training.loop import optimizer_step, plans_for
    from ..training.loss import denoising_losses
    from ..training.session import open_session
    from .step_profile import profile_step

    per_subject, subjects, resolution, batch_size = CASES[case]
    resolution = args.sdxl_size if case == "sdxl" else resolution
    started = time.perf_counter()
    models, checkpoint, clip_vision, encoder_flags = base_models(case)
    with tempfile.TemporaryDirectory(prefix="nested_attention_bench_") as tmp:
        tmp = Path(tmp)
        data = write_data(tmp / "data", subjects, per_subject)
        config = TrainConfig(checkpoint=str(checkpoint), clip_vision=str(clip_vision), data=str(data),
                             output=str(tmp / "out"), cache_dir=str(tmp / "cache"), resolution=resolution,
                             batch_size=batch_size, max_steps=10 ** 6, warmup_steps=0, sample_every=0,
                             progress_bar=False, drop_text=0.0, drop_subject=0.0, drop_both=0.0, **encoder_flags)
        if case == "tiny":  # first calls of every kernel, on another cache folder: the cold epochs stay cold
            optimizer_step(open_session(replace(config, cache_dir=str(tmp / "warm_up_cache")), models=models), 0)
        speedups, calls = [], {}
        for i in range(CACHE_ROUNDS if case == "tiny" else 1):  # full-size cases: one epoch fills the cache
            folder = replace(config, cache_dir=str(tmp / f"cache{i}"))
            cold = open_session(folder, models=models)
            steps_per_epoch = cold.order.micro_per_epoch
            cold_rate = epoch_rate(cold, steps_per_epoch)  # every feature from the host models (or stand-ins)
            calls = dict(cold.encoders.calls)
            del cold  # its encoder and AdamW state: 7 GB for SDXL's default encoder
            gc.collect()
            warm = open_session(folder, models=models)  # the same cache folder, a fresh encoder: the same epoch
            speedups.append(epoch_rate(warm, steps_per_epoch) / cold_rate)
            assert sum(warm.encoders.calls.values()) == 0, warm.encoders.calls
        den, encoder = warm.denoiser, warm.encoder
        result = {"case": case, "resolution": resolution, "batch": batch_size,
                  "unet_params": sum(p.numel() for p in den.base.diffusion_model.parameters()),
                  "layers": len(models.layers), "family": models.family,
                  "encoder_params": sum(p.numel() for p in encoder.parameters()),
                  "projection_params": sum(p.numel() for p in encoder.nested_layers.parameters()),
                  "encoder": json.loads(encoder.config.to_json()), "built_s": time.perf_counter() - started,
                  # what users train at: the family's default (the tiny test family's is not a real one)
                  "family_resolution": resolution if case == "tiny" else models.model_family.resolution,
                  "cache_speedup": statistics.median(speedups), "cache_speedups": speedups, "calls": calls}

        _, plans = plans_for(warm, 0)
        batch = assemble(warm.store, warm.data, plans, den.model_sampling, den.process_latent_in, 0)
        options = den.transformer_options(batch, with_subject=False)
        conds = den.model_conds(batch, batch.x_noisy)

        reach = torch.zeros((), requires_grad=True)  # added to every attn2 output: the gradient reaches each
        patches = dict(options.get("patches", {}))
        patches["attn2_output_patch"] = [*patches.get("attn2_output_patch", []), lambda out, extra: out + reach]
        options = {**options, "patches": patches}

        def unet_alone():
            denoised = den.base.apply_model(batch.x_noisy, batch.sigma, transformer_options=options, **conds)
            denoising_losses(den.kind, batch.sigma, batch.x_noisy, denoised, batch.x0).mean().backward()

        step_counter = iter(range(steps_per_epoch, 10 ** 9))

        def training_step():
            optimizer_step(warm, next(step_counter))

        guard = LoadGuard(args.max_other_load, args.retry_budget)
        repeats = args.repeats * (TINY_ROUNDS_FACTOR if case == "tiny" else 1)  # a tiny step is short and noisy
        warmup = args.warmup if case == "tiny" else max(args.warmup, 2)  # a full-size UNet's memory settles later
        rounds = interleaved([unet_alone, training_step], 2 * repeats, warmup, guard)
        ratios = order_balanced_ratios(rounds)
        if case == "tiny":  # the same with --gradient-checkpointing: the step against the UNet checkpointed alike
            result["checkpointing"] = checkpointing_ratios(warm, models, batch, config, guard, repeats, warmup)
        peaks = []
        for fn in (unet_alone, training_step):
            peak_memory_reset()
            fn()
            peaks.append(peak_memory_bytes())
        faults = [minor_page_faults()]
        breakdown = profile_step(training_step, {"resampler": [warm.encoder.resampler],
                                                 "nested_projections": list(warm.encoder.nested_layers.values())})
        faults.append(minor_page_faults())
        reference = profile_step(unet_alone, {})
        faults.append(minor_page_faults())
        result.update(unet_s=statistics.median(a for a, _ in rounds), step_s=statistics.median(s for _, s in rounds),
                      ratio=statistics.median(ratios), spread=spread(ratios), rounds=len(rounds), ratios=ratios,
                      loaded=guard.loaded, peaks=peaks, forward_ms=breakdown.forward_ms,
                      backward_ms=breakdown.backward_ms, profiled_ms=breakdown.wall_ms,
                      reference_ms=sum(reference.forward_ms.values()) + sum(reference.backward_ms.values()),
                      faults=[faults[1] - faults[0], faults[2] - faults[1]])
    return result


def checkpointing_ratios(plain, models, batch, config, guard, repeats: int, warmup: int) -> dict:
    """Rounds of (frozen UNet forward + backward alone, checkpointed; training step with --gradient-checkpointing;
    the same UNet alone without checkpointing), on the warm cache of ``plain``'s folder."""
    import torch

    from ..training.loop import optimizer_step
    from ..training.loss import denoising_losses
    from ..training.session import open_session

    session = open_session(replace(config, gradient_checkpointing=True), models=models)
    den = session.denoiser
    conds = den.model_conds(batch, batch.x_noisy)
    reach = torch.zeros((), requires_grad=True)

    def alone(denoiser):
        options = denoiser.transformer_options(batch, with_subject=False)
        patches = dict(options.get("patches", {}))
        patches["attn2_output_patch"] = [*patches.get("attn2_output_patch", []), lambda out, extra: out + reach]
        options = {**options, "patches": patches}

        def run():
            denoised = denoiser.base.apply_model(batch.x_noisy, batch.sigma, transformer_options=options, **conds)
            denoising_losses(denoiser.kind, batch.sigma, batch.x_noisy, denoised, batch.x0).mean().backward()
        return run

    steps = iter(range(10 ** 6, 10 ** 9))
    rounds = interleaved([alone(den), lambda: optimizer_step(session, next(steps)), alone(plain.denoiser)],
                         2 * repeats, warmup, guard)
    step_ratios = order_balanced_ratios([(a, s) for a, s, _ in rounds])
    recompute_ratios = order_balanced_ratios([(p, a) for a, _, p in rounds])
    return {"ratio": statistics.median(step_ratios), "spread": spread(step_ratios), "ratios": step_ratios,
            "unet_ratio": statistics.median(recompute_ratios), "unet_s": statistics.median(a for a, _, _ in rounds),
            "step_s": statistics.median(s for _, s, _ in rounds)}


def print_case(r: dict) -> None:
    from .step_profile import Breakdown

    names = {"tiny": "tiny SD1.5 test checkpoint", "sdxl": "SDXL architecture", "sd15": "SD1.5 architecture"}
    print(f"\n== {r['case']}: {names[r['case']]} ({r['unet_params'] / 1e6:.0f}M UNet parameters, {r['layers']} attn2 "
          f"layers), {r['resolution']} px, batch {r['batch']}; encoder {r['encoder_params'] / 1e6:.1f}M parameters "
          f"({r['projection_params'] / 1e6:.1f}M nested projections; {r['encoder']['num_tokens']} tokens, width "
          f"{r['encoder']['width']}, depth {r['encoder']['depth']}, image features {r['encoder']['image_feature_dim']})")
    print(f"  frozen UNet forward + backward alone {r['unet_s'] * 1e3:9.1f} ms")
    print(f"  whole training step (cache warm)     {r['step_s'] * 1e3:9.1f} ms   ratio {r['ratio']:.3f}, spread "
          f"{r['spread']:.3f} over {r['rounds']} rounds ({r['loaded']} kept although loaded)")
    print(f"  ratio per two rounds (one of each order): {' '.join(f'{x:.3f}' for x in r['ratios'])}")
    if all(r["peaks"]):
        print(f"  peak resident memory: UNet alone {r['peaks'][0] / 2**20:.0f} MiB, training step "
              f"{r['peaks'][1] / 2**20:.0f} MiB")
    if "checkpointing" in r:
        c = r["checkpointing"]
        print(f"  --gradient-checkpointing: frozen UNet forward + backward alone, checkpointed {c['unet_s'] * 1e3:9.1f} ms "
              f"({c['unet_ratio']:.3f} of it without checkpointing: the recomputation)")
        print(f"  whole training step with checkpointing {c['step_s'] * 1e3:9.1f} ms   ratio {c['ratio']:.3f}, spread "
              f"{c['spread']:.3f} ({' '.join(f'{x:.3f}' for x in c['ratios'])})")
    if r["case"] == "tiny":
        print(f"  one epoch, cache warm / cold (host calls when cold: {r['calls']}): median "
              f"{r['cache_speedup']:.2f} of {' '.join(f'{x:.2f}' for x in r['cache_speedups'])}")
    Breakdown(r["forward_ms"], r["backward_ms"], r["profiled_ms"]).print(f"  breakdown ({r['case']})")
    print(f"  {'(the frozen UNet alone, profiled the same way)':<42}{r['reference_ms']:>23.1f}")
    print(f"  minor page faults while profiled (memory the kernel maps in afresh): the step {r['faults'][0]}, the "
          f"UNet alone {r['faults'][1]}")
    breakdown = Breakdown(r["forward_ms"], r["backward_ms"], r["profiled_ms"])
    native = r["family_resolution"]
    scale = (native / r["resolution"]) ** 2
    line = f"  from the profile: step / its own frozen-UNet part {breakdown.ratio():.3f} at {r['resolution']} px"
    if scale != 1:
        line += (f"; at {native} px (x{scale:.0f} pixels; the encoder, optimizer and clipping unchanged, the rest "
                 f"x{scale:.0f}) at most {breakdown.ratio(scale):.3f}")
    print(line)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_arguments(parser, 6, "pairs of rounds (UNet alone, training step; the tiny case 3x as many)")
    parser.add_argument("--cases", default="tiny,sdxl", help="comma-separated cases: tiny, sdxl, sd15 (SD1.5 at 512 px: about 10 more minutes)")
    parser.add_argument("--sdxl-size", type=int, default=256, help="image size of the SDXL case, in pixels")
    parser.add_argument("--case-json", help=argparse.SUPPRESS)  # internal: run one case, write its figures here
    args = parser.parse_args(argv)
    if args.case_json:
        return _child(args)

    import torch

    print("Nested Attention training step vs the frozen UNet (fp32, CPU), its breakdown, and the feature cache")
    print(f"machine: {machine(args.threads)}; torch {torch.__version__}; load average {load_average()}")
    results = {}
    for case in args.cases.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, "-m", __spec__.name, *(argv if argv is not None else sys.argv[1:]),
                       "--case-json", out.name, "--cases", case]
            subprocess.run(command, check=True)
            results[case] = json.loads(Path(out.name).read_text())
        print_case(results[case])
    unsteady = [c for c, r in results.items() if r["spread"] > abs(r["ratio"] - 1)]
    unsteady += [f"{c} (checkpointing)" for c, r in results.items()
                 if "checkpointing" in r and r["checkpointing"]["spread"] > abs(r["checkpointing"]["ratio"] - 1)]
    if "tiny" in results:
        print(f"\ncache: one epoch warm / cold = {results['tiny']['cache_speedup']:.2f}x (tiny case: the host's VAE, "
              "CLIP and CLIP vision are real there)")
    print(f"\nload average at the end {load_average()}")
    if unsteady:
        print(f"no RESULT: the spread over the rounds of {unsteady} is larger than the overhead measured; run again "
              "on a quieter machine or with more --repeats")
        return 1
    if "tiny" in results:  # with --cases tiny alone: its own figures (the checkpointing cost among them)
        sdxl = f"sdxl_train_step_overhead={results['sdxl']['ratio']:.3f} " if "sdxl" in results else ""
        print(f"RESULT train_step_overhead={results['tiny']['ratio']:.3f} {sdxl}"
              f"cache_speedup={results['tiny']['cache_speedup']:.2f} "
              f"ckpt_train_step_overhead={results['tiny']['checkpointing']['ratio']:.3f} "
              f"ckpt_recompute_cost={results['tiny']['checkpointing']['unet_ratio']:.3f}")
    return 0


def _child(args) -> int:
    from ..training.bootstrap import bootstrap_comfy

    logging.basicConfig(level=logging.WARNING)
    bootstrap_comfy()
    import torch

    torch.set_num_threads(args.threads)
    Path(args.case_json).write_text(json.dumps(run_case(args.cases, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
