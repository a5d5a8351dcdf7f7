"""What a training step costs beyond the frozen UNet, and what the feature cache saves.

    python -m nested_attention.benchmarks.train_step [--resolution PX] [--batch-size B] [--repeats N] [--warmup N] [--threads N]

Runs the real trainer (``training/``: session, data folder, feature cache, loop step) on the tiny
SD1.5 test checkpoint (toyworld/tiny_models.py: a one-level UNet at SD1.5's real widths, 320
channels, context 768, 4 cross-attention layers; full-size CLIP-L; TAESD-shaped VAE) with the tiny
CLIP vision tower, fp32 on the CPU, batch 4 of 128 px images by default. The subject encoder is
scaled to the UNet roughly as IP-Adapter Plus is to SD1.5 (16 tokens, width 128, depth 2: 2.5M
parameters, 10% of this UNet; IP-Adapter Plus is 6% of SD1.5's); its nested projections have the
real SD1.5 shapes. The encoder's cost does not grow with the image size and the UNet's does: at
64 px (an 8x8 latent) this one-level UNet is so cheap that the fixed per-step costs weigh about
twice what they weigh at 128 px; real training (512 px and more) is far past both. One torch thread
by default: the ratios are what matters, and with two threads on two cores that other processes
share, OpenMP's spin-waiting makes single timings swing by a factor of three.

* ``train_step_overhead``: median time of a whole training step (cache warm: features read from the
  cache folder, encoder forward, patched UNet forward, loss, backward, clipping, AdamW, schedule)
  over the median time of the frozen UNet's forward + backward alone (the same batch through the
  same host ``apply_model`` without the patch, backward to the text conditioning: the same stretch of
  the network the nested values' gradients cross, from the output back to the first cross-attention
  layer), timed in alternation.
* ``cache_speedup``: samples/s of one epoch of training steps with the cache warm over the same
  epoch with the cache cold (every feature computed by the host's VAE, CLIP text encoder and CLIP
  vision and written to the cache).

The last line is ``RESULT train_step_overhead=<ratio> cache_speedup=<ratio>``.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .timing import machine

SUBJECTS = {"alice": "woman", "bob": "man", "rex": "dog", "tom": "cat"}
IMAGES_PER_SUBJECT = 2
ENCODER = {"num_tokens": 16, "encoder_width": 128, "encoder_depth": 2, "encoder_heads": 2, "encoder_dim_head": 64,
           "encoder_ff_mult": 4}


def _bootstrap():
    """ComfyUI (CPU) and the tiny test models (toyworld/tiny_models.py), registered."""
    from ..training.bootstrap import bootstrap_comfy

    bootstrap_comfy()
    from ..toyworld import tiny_comfy, tiny_models

    tiny_comfy.register_test_models()
    return tiny_models.write_tiny_models(tiny_models.default_models_dir())


def write_data(root: Path) -> Path:
    import numpy as np
    from PIL import Image, ImageDraw

    for s, (name, word) in enumerate(SUBJECTS.items()):
        (root / name).mkdir(parents=True)
        for i in range(IMAGES_PER_SUBJECT):
            rng = np.random.default_rng(s * 10 + i)
            image = Image.fromarray((rng.random((144, 160, 3)) * 90 + 80).astype(np.uint8))
            ImageDraw.Draw(image).ellipse([20 + 10 * i, 20, 100, 120], fill=(60 * s % 255, 200 - 40 * s, 90))
            image.save(root / name / f"{i}.png")
            (root / name / f"{i}.txt").write_text(f"a photo of a {word}, view {i}, number {s * 10 + i}")
    (root / "subjects.json").write_text(__import__("json").dumps({k: v for k, v in SUBJECTS.items()}))
    return root


def warm_up(session, batch_size: int) -> None:
    """One forward + backward of the plain and the patched UNet and the encoder on made-up features."""
    import torch

    from ..nested_attention_core.prompt import PromptWords
    from ..training.batch import Batch
    from ..training.binding import SUBJECT_WORD
    from ..training.data import TargetCrop
    from ..training.features import TextFeatures
    from ..training.step import encode_nested

    models, den = session.models, session.denoiser
    features = models.clip_vision.encode_image(torch.rand(1, 64, 64, 3), crop=True)["penultimate_hidden_states"]
    words = PromptWords(((SUBJECT_WORD, (2,)),), 77)
    text = TextFeatures(torch.randn(1, 77, models.context_dim), None, words, {})
    side = session.config.resolution // 8
    x0 = torch.randn(batch_size, 4, side, side)
    batch = Batch([], x0, torch.full((batch_size,), 3.0), torch.randn_like(x0), x0 * 2, [text] * batch_size,
                  [TargetCrop(side * 8, side * 8, 0, 0, side * 8)] * batch_size, [words] * batch_size,
                  torch.randn(batch_size, *features.shape[1:]), None)
    den.losses(batch, encode_nested(session.encoder, batch.references)).mean().backward()
    conds = den.model_conds(batch, batch.x_noisy)
    context = conds.pop("c_crossattn").requires_grad_(True)
    den.base.apply_model(batch.x_noisy, batch.sigma, transformer_options=den.transformer_options(batch, False),
                         c_crossattn=context, **conds).sum().backward()
    session.encoder.zero_grad(set_to_none=True)


def epoch_samples_per_s(session, steps: int, first_step: int) -> float:
    from ..training.loop import optimizer_step

    start = time.perf_counter()
    for step in range(first_step, first_step + steps):
        optimizer_step(session, step)
    return steps * session.config.batch_size / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of each (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repeats first")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: stable while other processes share the cores)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per training step")
    parser.add_argument("--resolution", type=int, default=128, help="training image size in pixels")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    models_dir = _bootstrap()
    import torch

    from ..training.base_models import load_base_models
    from ..training.batch import assemble
    from ..training.config import TrainConfig
    from ..training.loop import optimizer_step, plans_for
    from ..training.loss import denoising_losses
    from ..training.session import open_session

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="nested_attention_bench_") as tmp:
        tmp = Path(tmp)
        data = write_data(tmp / "data")
        config = TrainConfig(checkpoint=str(models_dir["sd15"]), clip_vision=str(models_dir["clip_vision"]),
                             data=str(data), output=str(tmp / "out"), cache_dir=str(tmp / "cache"),
                             resolution=args.resolution,
                             batch_size=args.batch_size, max_steps=1000, warmup_steps=0, sample_every=0,
                             progress_bar=False, **ENCODER)
        models = load_base_models(config)
        cold = open_session(config, models=models)
        den = cold.denoiser
        steps_per_epoch = cold.order.micro_per_epoch
        params = sum(p.numel() for p in cold.encoder.parameters()) / 1e6
        unet = sum(p.numel() for p in den.base.diffusion_model.parameters()) / 1e6

        # first calls of every kernel, on a synthetic batch: the epochs then time features and steps only
        for _ in range(args.warmup):
            warm_up(cold, args.batch_size)

        cold_rate = epoch_samples_per_s(cold, steps_per_epoch, 0)
        calls = dict(cold.encoders.calls)
        warm = open_session(config, models=models)  # same cache folder, fresh encoder: the same epoch again
        warm_rate = epoch_samples_per_s(warm, steps_per_epoch, 0)
        assert sum(warm.encoders.calls.values()) == 0, warm.encoders.calls

        _, plans = plans_for(warm, 0)
        batch = assemble(warm.store, warm.data, plans, den.model_sampling, den.process_latent_in, 0)
        options = den.transformer_options(batch, with_subject=False)
        conds = den.model_conds(batch, batch.x_noisy)

        def unet_alone():
            context = conds["c_crossattn"].detach().requires_grad_(True)
            denoised = den.base.apply_model(batch.x_noisy, batch.sigma, transformer_options=options,
                                            **{**conds, "c_crossattn": context})
            denoising_losses(den.kind, batch.sigma, batch.x_noisy, denoised, batch.x0).mean().backward()

        step_counter = iter(range(steps_per_epoch, 10 ** 9))

        def training_step():
            optimizer_step(warm, next(step_counter))

        for _ in range(args.warmup):
            unet_alone(), training_step()
        times = {unet_alone: [], training_step: []}
        for i in range(args.repeats):
            for fn in ((unet_alone, training_step) if i % 2 == 0 else (training_step, unet_alone)):
                start = time.perf_counter()
                fn()
                times[fn].append(time.perf_counter() - start)
        unet_s, step_s = statistics.median(times[unet_alone]), statistics.median(times[training_step])

    overhead, speedup = step_s / unet_s, warm_rate / cold_rate
    print("Nested Attention training step vs the frozen UNet, and the feature cache")
    print(f"machine: {machine(torch.get_num_threads())}; torch {torch.__version__}, fp32, CPU")
    print(f"model: tiny SD1.5 test checkpoint (UNet {unet:.1f}M parameters, {len(models.layers)} attn2 layers, "
          f"{den.kind}), {args.resolution} px, batch {args.batch_size}; encoder {params:.2f}M parameters "
          f"({ENCODER['num_tokens']} tokens)")
    print(f"data: {len(warm.data)} images of {len(warm.data.subjects)} subjects, {steps_per_epoch} steps per epoch")
    print(f"\nmedian of {args.repeats} after {args.warmup} warm-up, alternating:")
    print(f"  frozen UNet forward + backward alone  {unet_s * 1e3:8.1f} ms   (backward to the text conditioning)")
    print(f"  whole training step (cache warm)      {step_s * 1e3:8.1f} ms   ratio {overhead:.3f}  (target <= 1.15)")
    print("\none epoch of training steps:")
    print(f"  cache cold  {cold_rate:7.2f} samples/s   (host calls: {calls})")
    print(f"  cache warm  {warm_rate:7.2f} samples/s   (host calls: none)   speedup {speedup:.2f}  (target >= 1.5)")
    print(f"RESULT train_step_overhead={overhead:.3f} cache_speedup={speedup:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
