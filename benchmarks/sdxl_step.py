"""What nested attention costs in one KSampler step of a full SDXL-architecture UNet.

    python -m nested_attention.benchmarks.sdxl_step [--repeats N] [--warmup N] [--size PX] [--threads N]

ComfyUI's own SDXL model (``comfy.supported_models.SDXL``: the real layout, 2.6B parameters, 70
cross-attention layers) with seeded random weights, fp32 on the CPU, sampled through KSampler's
code path (``common_ksampler``, euler, one step, cfg 5: one UNet call on [uncond, cond], batch 2)
at 512 px (a 64x64 latent) by default. Text conditioning and pooled output are random tensors of
SDXL's shapes (no text encoder is loaded); the positive prompt carries the word positions of
"a photo of a person and a dog". Three models are timed in interleaved rounds: the plain model,
and the model with one (``person``) and two (``person``, ``dog``) applied subjects of 16 nested
tokens each. Ratios are medians over the rounds of (with subjects) / (plain) of the same round.

The peak resident memory of one step is measured per model (Linux: /proc/self/clear_refs resets
the peak, VmHWM reads it); the difference to the plain model is what the subjects add.

The last line is ``RESULT sdxl_step_1subj=<ratio> sdxl_step_2subj=<ratio>``; the goal for one
subject is <= 1.03.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from .architectures import random_weights_model
from .attention_overhead import POSITIVE_PROMPT, WORDS, prompt_words
from .timing import (LoadGuard, add_timing_arguments, interleaved, load_average, machine, peak_memory_bytes,
                     peak_memory_reset, print_result)

NESTED_TOKENS = 16


def random_subject(host, model, word: str, generator):
    from ..nested_attention_core.subject import NestedSubject
    import torch

    family = host.model_family(model)
    nested = {layer.id: (torch.randn(NESTED_TOKENS, layer.width, generator=generator),
                         torch.randn(NESTED_TOKENS, layer.width, generator=generator)) for layer in family.layers}
    return NestedSubject(word=word, tokens=torch.randn(NESTED_TOKENS, family.context_dim, generator=generator),
                         nested=nested, base_family=family.name, context_dim=family.context_dim)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_arguments(parser, 3, "rounds (plain, 1 and 2 subjects)")
    parser.add_argument("--size", type=int, default=512, help="image size in pixels (latent = size / 8)")
    args = parser.parse_args(argv)

    from ..training.bootstrap import bootstrap_comfy

    bootstrap_comfy()
    import comfy.utils
    import nodes as host_nodes  # ComfyUI's nodes.py
    import torch

    from ..nodes import host

    torch.set_num_threads(args.threads)
    comfy.utils.PROGRESS_BAR_ENABLED = False
    print(f"Nested attention in one KSampler step of the SDXL architecture: {args.size} px, cfg 5 (batch 2), "
          f"fp32, CPU; {args.repeats} interleaved rounds after {args.warmup} warm-up")
    print(f"machine: {machine(torch.get_num_threads())}; load average {load_average()}")
    started = time.perf_counter()
    model = random_weights_model("sdxl")
    family = host.model_family(model)
    print(f"model: {family.describe()}, {sum(p.numel() for p in model.model.parameters()) / 1e9:.2f}B parameters, "
          f"built in {time.perf_counter() - started:.0f} s")

    generator = torch.Generator().manual_seed(1)
    one = host.apply_subject(model, random_subject(host, model, WORDS[0], generator), 1.0)
    two = host.apply_subject(one, random_subject(host, model, WORDS[1], generator), 1.0)
    positive = [[torch.randn(1, 77, 2048, generator=generator),
                 {"pooled_output": torch.randn(1, 1280, generator=generator),
                  host.PROMPT_KEY: prompt_words(POSITIVE_PROMPT)}]]
    negative = [[torch.randn(1, 77, 2048, generator=generator),
                 {"pooled_output": torch.randn(1, 1280, generator=generator)}]]
    latent = {"samples": torch.zeros(1, 4, args.size // 8, args.size // 8)}

    def step(m):
        return lambda: host_nodes.common_ksampler(m, 7, 1, 5.0, "euler", "normal", positive, negative, latent)

    steps = [step(m) for m in (model, one, two)]
    peaks = []
    with torch.inference_mode():
        samples = [fn()[0]["samples"] for fn in steps]
        if torch.equal(samples[0], samples[1]) or torch.equal(samples[1], samples[2]):
            raise RuntimeError("an applied subject did not change the step: nothing nested would be timed")
        for fn in steps:
            peak_memory_reset()
            fn()
            peaks.append(peak_memory_bytes())
        guard = LoadGuard(args.max_other_load, args.retry_budget)
        rounds = interleaved(steps, args.repeats, args.warmup, guard)

    medians = [statistics.median(r[i] for r in rounds) for i in range(3)]
    ratios = [statistics.median(r[i] / r[0] for r in rounds) for i in (1, 2)]
    spread = [max(r[i] / r[0] for r in rounds) - min(r[i] / r[0] for r in rounds) for i in (1, 2)]
    print(f"\n{'subjects':<10}{'s/step':>9}{'ratio':>8}{'spread':>8}{'peak MiB':>10}{'vs plain':>10}")
    for i, label in enumerate(("0", "1", "2")):
        ratio = f"{ratios[i - 1]:>8.3f}{spread[i - 1]:>8.3f}" if i else f"{'':>16}"
        extra = f"{(peaks[i] - peaks[0]) / 2**20:>+10.0f}" if peaks[0] else f"{'?':>10}"
        print(f"{label:<10}{medians[i]:>9.2f}{ratio}{peaks[i] / 2**20:>10.0f}{extra}")
    print_result(guard, "rounds", {"sdxl_step_1subj": ratios[0], "sdxl_step_2subj": ratios[1]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
