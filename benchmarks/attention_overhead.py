"""What nested attention costs at sampling time: patched / vanilla time ratios on this machine.

    python -m nested_attention.benchmarks.attention_overhead [--repeats N] [--warmup N] [--threads N] [--skip-sampler]
                                                            [--max-other-load CPUS] [--retry-budget S]

Three levels, each timed as vanilla/patched pairs (fp32, CPU, inference mode):

* one attn2 layer: the host's attention (``comfy.ldm.modules.attention.optimized_attention``) vs
  ``NestedAttentionPatch`` (the same attention plus the nested-value correction);
* one whole transformer block: ComfyUI's ``BasicTransformerBlock`` unpatched vs the same block with
  the patch installed through ``transformer_options["patches_replace"]["attn2"]``, as the host does;
* one KSampler step (euler, cfg 5, so one UNet call on [uncond, cond]) of the tiny SD1.5 test model
  (tests/harness/tiny_models.py): the model vs ``apply_subject`` of a random 16-token subject.

Layers and blocks use SDXL shapes: 4096 queries at width 640 (10 heads) and 1024 queries at width
1280 (20 heads), 77 text tokens of width 2048, batch 2 = [uncond, cond] with each subject word only
in the positive row, as during CFG sampling; 16, 64 and 256 nested tokens; 1 and 2 subjects.

A ratio is the median over ``--repeats`` pairs of patched / vanilla, each pair run back to back in
alternating order after ``--warmup`` untimed pairs. On a shared machine a burst of another process
slows a 2-thread run many times over, so a pair during which other processes used more than
``--max-other-load`` CPUs (read from /proc/stat) is run again, within ``--retry-budget`` seconds;
the end of the output says how many pairs were kept under load anyway. The last line is
``RESULT block_overhead_1subj_16tok=<ratio>``: the WORSE of the two SDXL block shapes for one
subject with 16 nested tokens.
"""
from __future__ import annotations

import argparse
import math
import sys

from .timing import LoadGuard, add_timing_arguments, load_average, machine, paired, print_result

SHAPES = ((4096, 640, 10), (1024, 1280, 20))  # (queries, width, heads): SDXL input 4 and input 7 at 1024 px
TOKENS = (16, 64, 256)
SUBJECTS = (1, 2)
TEXT_TOKENS = 77
CONTEXT_DIM = 2048  # SDXL
LAYER = ("input", 4, 0)
POSITIVE_PROMPT = "a photo of a person and a dog"
WORDS = ("person", "dog")
COND_OR_UNCOND = [1, 0]  # the batch order the host uses: [uncond, cond]
UUIDS = ["negative", "positive"]
SAMPLER_PX = 512
SAMPLER_TOKENS = 16


def check_patched(plain, patched, what: str, uncond_row: bool = True) -> None:
    """Refuse to time a patch that does nothing: the cond row (last) must change, the uncond row not."""
    import torch

    if torch.equal(plain[-1], patched[-1]) or (uncond_row and not torch.equal(plain[0], patched[0])):
        raise RuntimeError(f"{what}: the nested attention patch did not change the cond row alone, so the "
                           f"benchmark would not time what sampling does")


def prompt_words(text: str, length: int = TEXT_TOKENS):
    """The PromptWords of a one-token-per-word prompt (positions 1..n), without a tokenizer."""
    from ..nested_attention_core.prompt import PromptWords

    return PromptWords(tuple((w, (i + 1,)) for i, w in enumerate(text.split())), length)


class Bench:
    def __init__(self, args):
        import torch

        from ..nodes import host

        self.torch, self.args = torch, args
        self.adapter = host
        positive, negative = prompt_words(POSITIVE_PROMPT), prompt_words("blurry")
        self.step = self.adapter.StepPrompts(dict(zip(UUIDS, (negative, positive))), sigma=1.0)
        self.block_results = []  # (queries, tokens, subjects, block ratio)
        self.guard = LoadGuard(args.max_other_load, args.retry_budget)

    def patch(self, width: int, tokens: int, count: int, generator):
        """Our attn2 replace for one layer, with ``count`` random subjects of ``tokens`` nested tokens."""
        from ..nested_attention_core.subject import NestedSubject

        torch, layer_id = self.torch, "_".join(map(str, LAYER))
        bindings = []
        for word in WORDS[:count]:
            nested = {layer_id: (torch.randn(tokens, width, generator=generator),
                                 torch.randn(tokens, width, generator=generator))}
            subject = NestedSubject(word=word, tokens=torch.randn(tokens, CONTEXT_DIM, generator=generator),
                                    nested=nested, base_family="sdxl", context_dim=CONTEXT_DIM)
            bindings.append(self.adapter.SubjectBinding(subject, 1.0, math.inf, 0.0))
        return self.adapter.NestedAttentionPatch(layer_id, tuple(bindings))

    def transformer_options(self, queries: int, width: int) -> dict:
        """What the UNet hands a transformer block during a CFG step (patches left out)."""
        side = math.isqrt(queries)
        return {"block": LAYER[:2], "block_index": LAYER[2], "transformer_index": 0,
                "cond_or_uncond": list(COND_OR_UNCOND), "uuids": list(UUIDS), "original_shape": [2, 4, 128, 128],
                "activations_shape": [2, width, side, side], "sigmas": self.torch.ones(2),
                self.adapter.STEP_KEY: self.step}

    def block(self, width: int, heads: int):
        """ComfyUI's BasicTransformerBlock with seeded weights (unit-variance projections)."""
        from comfy.ldm.modules.attention import BasicTransformerBlock

        torch = self.torch
        block = BasicTransformerBlock(width, heads, width // heads, context_dim=CONTEXT_DIM, checkpoint=False)
        generator = torch.Generator().manual_seed(width)
        with torch.no_grad():
            for name, p in block.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.ndim == 1:
                    p.fill_(1.0)  # LayerNorm weights
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p.shape[-1]))
        return block.eval()

    def layers_and_blocks(self):
        torch, args = self.torch, self.args
        print(f"{'shape':<18}{'tokens':>6}{'subj':>5}  {'layer ms':>9}{'patched':>9}{'ratio':>7}"
              f"  {'block ms':>9}{'patched':>9}{'ratio':>7}")
        for queries, width, heads in SHAPES:
            generator = torch.Generator().manual_seed(queries)
            x = torch.randn(2, queries, width, generator=generator)
            context = torch.randn(2, TEXT_TOKENS, CONTEXT_DIM, generator=generator)
            q = torch.randn(2, queries, width, generator=generator)
            k, v = (torch.randn(2, TEXT_TOKENS, width, generator=generator) for _ in range(2))
            block = self.block(width, heads)
            plain_options = self.transformer_options(queries, width)
            extra = {**plain_options, "n_heads": heads, "dim_head": width // heads, "attn_precision": None}
            one = {**plain_options, "patches_replace": {"attn2": {LAYER: self.patch(width, 16, 1, generator)}}}
            check_patched(block(x, context, transformer_options=plain_options),
                          block(x, context, transformer_options=one), "the transformer block")
            for tokens in TOKENS:
                for count in SUBJECTS:
                    patch = self.patch(width, tokens, count, generator)
                    patched_options = {**plain_options, "patches_replace": {"attn2": {LAYER: patch}}}
                    lv, lp, lr = paired(lambda: self.adapter.host_attention(q, k, v, extra),
                                        lambda: patch(q, k, v, extra), args.repeats, args.warmup, self.guard)
                    bv, bp, br = paired(lambda: block(x, context, transformer_options=plain_options),
                                        lambda: block(x, context, transformer_options=patched_options),
                                        args.repeats, args.warmup, self.guard)
                    self.block_results.append((queries, tokens, count, br))
                    print(f"{f'{queries}x{width} h{heads}':<18}{tokens:>6}{count:>5}  {lv * 1e3:>9.2f}{lp * 1e3:>9.2f}"
                          f"{lr:>7.3f}  {bv * 1e3:>9.1f}{bp * 1e3:>9.1f}{br:>7.3f}", flush=True)

    def sampler(self):
        """One KSampler step of the tiny SD1.5 model, cfg 5: the model vs one applied subject."""
        import comfy.sd
        import comfy.utils
        import nodes as host_nodes  # ComfyUI's nodes.py (its root is first on sys.path)

        from ..nested_attention_core.subject import NestedSubject
        from ..nodes.text_encode import NestedAttentionTextEncode as text_encode
        from harness import tiny_models

        torch, adapter = self.torch, self.adapter
        path = tiny_models.write_tiny_models(tiny_models.default_models_dir())["sd15"]
        comfy.utils.PROGRESS_BAR_ENABLED = False
        model, clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=False, output_clip=True)

        generator = torch.Generator().manual_seed(1)
        family = adapter.model_family(model)
        layers = family.layers
        nested = {layer.id: (torch.randn(SAMPLER_TOKENS, layer.width, generator=generator),
                             torch.randn(SAMPLER_TOKENS, layer.width, generator=generator)) for layer in layers}
        subject = NestedSubject(word="person", tokens=torch.randn(SAMPLER_TOKENS, family.context_dim, generator=generator),
                                nested=nested, base_family=family.name, context_dim=family.context_dim)
        patched = adapter.apply_subject(model, subject, 1.0, 0.0, 1.0)
        positive, negative = (text_encode.execute(clip, text).args[0] for text in ("a photo of a person", "blurry"))
        latent = {"samples": torch.zeros(1, 4, SAMPLER_PX // 8, SAMPLER_PX // 8)}

        def one_step(m):
            return lambda: host_nodes.common_ksampler(m, 7, 1, 5.0, "euler", "normal", positive, negative, latent)

        check_patched(one_step(model)()[0]["samples"], one_step(patched)()[0]["samples"], "the KSampler step",
                      uncond_row=False)
        sv, sp, sr = paired(one_step(model), one_step(patched), self.args.repeats, self.args.warmup, self.guard)
        print(f"\nKSampler, 1 step: SD1.5 mini test model ({len(layers)} attn2 layers), {SAMPLER_PX} px, batch 1, "
              f"cfg 5 (one UNet call on [uncond, cond]), 1 subject x {SAMPLER_TOKENS} nested tokens")
        print(f"  vanilla {sv * 1e3:.1f} ms   patched {sp * 1e3:.1f} ms   ratio {sr:.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_arguments(parser, 5, "vanilla/patched pairs")
    parser.add_argument("--skip-sampler", action="store_true", help="leave out the KSampler step")
    args = parser.parse_args(argv)

    from ..training.bootstrap import bootstrap_comfy

    bootstrap_comfy()  # ComfyUI first on sys.path, CPU mode
    import comfy.ldm.modules.attention as attention
    import torch

    torch.set_num_threads(args.threads)
    print(f"Nested attention overhead: patched / vanilla time, median of {args.repeats} pairs after "
          f"{args.warmup} warm-up")
    print(f"machine: {machine(torch.get_num_threads())}; load average {load_average()}")
    print(f"torch {torch.__version__}, fp32 on CPU, inference mode; host attention "
          f"{attention.optimized_attention.__name__}")
    print(f"SDXL shapes, batch 2 = [uncond, cond], {TEXT_TOKENS} text tokens, subject words in the cond row only")
    print("RESULT: block ratio for 1 subject x 16 nested tokens, the worse of the two shapes\n")

    bench = Bench(args)
    with torch.inference_mode():
        bench.layers_and_blocks()
        if not args.skip_sampler:
            bench.sampler()
    result = max(ratio for _, tokens, count, ratio in bench.block_results if tokens == 16 and count == 1)
    print_result(bench.guard, "pairs", {"block_overhead_1subj_16tok": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
