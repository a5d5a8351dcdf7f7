"""What nested attention costs at sampling and training time: patched / vanilla time ratios on this
machine, beside the ratio its arithmetic allows, and decoupled cross-attention's beside it.

    python -m nested_attention.benchmarks.attention_overhead [--repeats N] [--warmup N] [--threads N] [--skip-sampler]
                                                            [--skip-training] [--max-other-load CPUS] [--retry-budget S]

Each case (shape, nested tokens N, subjects) is timed as vanilla/patched pairs (fp32, CPU) at these levels:

* attention: the host's attention function on projected q, k, v (``host_attention``) vs our attn2
  replace (``NestedAttentionPatch``) on the same q, k, v;
* layer: ComfyUI's ``CrossAttention`` (to_q, to_k, to_v, the host's attention, to_out) unpatched vs
  the same projections around our replace, as the host calls it; ``decoupled``: the same with the
  subject applied by decoupled cross-attention (the IP-Adapter mechanism, ``baselines.py``) at the same N;
* train: the layer's forward + backward (frozen weights, gradients to the layer's input and the nested
  keys/values), both rows holding the subject as in training, vs the unpatched layer's;
* block (one subject of 16 tokens only): ComfyUI's ``BasicTransformerBlock`` unpatched vs with the
  patch in ``patches_replace``;
* one KSampler step (euler, cfg 5) of the tiny SD1.5 test model (tests/harness/tiny_models.py) vs
  ``apply_subject`` of a random 16-token subject.

Beside each measured ratio, ``limit``: 1 + (FLOPs the method adds) / (the layer's FLOPs), counted
in ``attention_flops.py``. Shapes are SDXL's at 1024 px: 4096 queries at width 640 (10 heads) and
1024 at width 1280 (20 heads), 77 text tokens of width 2048, batch 2 = [uncond, cond] with each
subject word only in the positive row, as during CFG sampling.

A ratio is the median over ``--repeats`` pairs of patched / vanilla, each pair run back to back in
alternating order after ``--warmup`` untimed pairs; the spread is the interquartile range of the
pairs' ratios. On a shared machine a burst of another process slows a 2-thread run many times over,
so a pair during which other processes used more than ``--max-other-load`` CPUs (read from
/proc/stat) is run again, within ``--retry-budget`` seconds; the end of the output says how many
pairs were kept under load anyway. The last line is ``RESULT attn2_layer_1subj_16tok=<r>
decoupled_layer_16tok=<r> attn2_attention_1subj_16tok=<r> attn2_train_1subj_16tok=<r>
block_overhead_1subj_16tok=<r>``: each the WORSE of the two SDXL shapes for one subject of 16 tokens.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass

from .attention_flops import LayerShape
from .timing import LoadGuard, add_timing_arguments, interleaved, load_average, machine, print_result

SHAPES = ((4096, 640, 10), (1024, 1280, 20))  # (queries, width, heads): SDXL input 4 and input 7 at 1024 px
CASES = ((0, 16, 1), (0, 16, 2), (0, 64, 2), (0, 256, 2), (1, 16, 1), (1, 256, 2))  # (shape, nested tokens, subjects)
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


@dataclass(frozen=True, eq=False)
class FixedBinding:
    """A subject's binding (``host.Binding``) whose nested keys/values are given tensors, handed out
    afresh at each call so that a training backward can run through them again and again."""

    word: str
    keys: object  # [m, width]
    values: object
    rule: str
    strength: float = 1.0

    def active(self, sigma: float) -> bool:
        return True

    def nested_kv(self, layer_id, device, dtype):
        return self.keys[None], self.values[None]

    def query_mask(self, grid, areas, latent_batch, latent_size, device):
        return None


@dataclass
class Timed:
    vanilla_s: float
    patched_s: float
    ratio: float  # median of the pairs' ratios
    spread: float  # their interquartile range


def timed(vanilla, patched, args, guard) -> Timed:
    pairs = interleaved([vanilla, patched], args.repeats, args.warmup, guard,
                        time.process_time if args.cpu_time else time.perf_counter)
    ratios = sorted(p / v for v, p in pairs)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return Timed(statistics.median(v for v, _ in pairs), statistics.median(p for _, p in pairs),
                 statistics.median(ratios), quartiles[2] - quartiles[0])


class Bench:
    def __init__(self, args):
        import torch

        from ..nodes import host

        self.torch, self.args = torch, args
        self.adapter = host
        positive, negative = prompt_words(POSITIVE_PROMPT), prompt_words("blurry")
        self.step = self.adapter.StepPrompts(dict(zip(UUIDS, (negative, positive))), sigma=1.0)
        self.results = []  # (queries, tokens, subjects, {level: Timed})
        self.guard = LoadGuard(args.max_other_load, args.retry_budget)

    def patch(self, width: int, tokens: int, count: int, generator, rule: str = "nested", grad: bool = False):
        """Our attn2 replace for one layer, with ``count`` random subjects of ``tokens`` nested tokens."""
        torch, layer_id = self.torch, "_".join(map(str, LAYER))
        bindings = tuple(FixedBinding(word, *(torch.randn(tokens, width, generator=generator).requires_grad_(grad)
                                               for _ in range(2)), rule) for word in WORDS[:count])
        return self.adapter.NestedAttentionPatch(layer_id, bindings)

    def transformer_options(self, queries: int, width: int, training: bool = False) -> dict:
        """What the UNet hands a transformer block during a CFG step (patches left out); in training
        every row is a positive prompt holding the subject words."""
        side = math.isqrt(queries)
        return {"block": LAYER[:2], "block_index": LAYER[2], "transformer_index": 0,
                "cond_or_uncond": [0, 0] if training else list(COND_OR_UNCOND),
                "uuids": [UUIDS[1]] * 2 if training else list(UUIDS), "original_shape": [2, 4, 128, 128],
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
                p.requires_grad_(False)
                if name.endswith("bias"):
                    p.zero_()
                elif p.ndim == 1:
                    p.fill_(1.0)  # LayerNorm weights
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p.shape[-1]))
        return block.eval()

    @staticmethod
    def replaced(attn2, patch, extra):
        """The layer as the host runs it with an attn2 replace (attention.py, BasicTransformerBlock.forward)."""
        return lambda n, context: attn2.to_out(patch(attn2.to_q(n), attn2.to_k(context), attn2.to_v(context), extra))

    def cases(self):
        torch, args = self.torch, self.args
        print(f"{'shape':<16}{'N':>4}{'subj':>5}  {'level':<10}{'vanilla ms':>11}{'patched ms':>11}{'ratio':>7}"
              f"{'spread':>8}{'limit':>7}{'plain GFLOP':>12}{'added GFLOP':>12}")
        for shape_index, tokens, count in CASES:
            queries, width, heads = SHAPES[shape_index]
            shape = LayerShape(queries, width, heads)
            generator = torch.Generator().manual_seed(queries + tokens + count)
            x = torch.randn(2, queries, width, generator=generator)
            context = torch.randn(2, TEXT_TOKENS, CONTEXT_DIM, generator=generator)
            block = self.block(width, heads)
            attn2 = block.attn2
            q, k, v = attn2.to_q(x).detach(), attn2.to_k(context).detach(), attn2.to_v(context).detach()
            plain_options = self.transformer_options(queries, width)
            extra = {**plain_options, "n_heads": heads, "dim_head": width // heads, "attn_precision": None}
            patch = self.patch(width, tokens, count, generator)
            decoupled = self.patch(width, tokens, count, generator, rule="decoupled")
            patched_options = {**plain_options, "patches_replace": {"attn2": {LAYER: patch}}}
            layer, ours, theirs = (lambda n, c: attn2(n, context=c, transformer_options=plain_options),
                                   self.replaced(attn2, patch, extra), self.replaced(attn2, decoupled, extra))
            timings = {}
            with torch.inference_mode():
                for name, candidate in (("layer", ours), ("decoupled", theirs)):
                    check_patched(layer(x, context), candidate(x, context), f"the {name} layer")
                timings["attention"] = timed(lambda: self.adapter.host_attention(q, k, v, extra),
                                             lambda: patch(q, k, v, extra), args, self.guard)
                timings["layer"] = timed(lambda: layer(x, context), lambda: ours(x, context), args, self.guard)
                timings["decoupled"] = timed(lambda: layer(x, context), lambda: theirs(x, context), args, self.guard)
            if not args.skip_training:
                timings["train"] = self.training(attn2, x, context, shape, tokens, count, generator)
            if (tokens, count) == (16, 1):  # a block at 4096 queries takes seconds: only the RESULT's cases
                with torch.inference_mode():
                    check_patched(block(x, context, transformer_options=plain_options),
                                  block(x, context, transformer_options=patched_options), "the transformer block")
                    timings["block"] = timed(lambda: block(x, context, transformer_options=plain_options),
                                             lambda: block(x, context, transformer_options=patched_options),
                                             args, self.guard)
            self.results.append((queries, tokens, count, timings))
            flops = {"attention": (shape.attention(), shape.nested(tokens, count, 1)),
                     "layer": (shape.plain(), shape.nested(tokens, count, 1)),
                     "decoupled": (shape.plain(), shape.decoupled(tokens, count, 1)),
                     "train": (shape.plain(True), shape.nested(tokens, count, 2, True))}
            for level, t in timings.items():
                plain_flops, added = flops.get(level, (None, None))
                limit = f"{1 + added / plain_flops:>7.3f}{plain_flops / 1e9:>12.2f}{added / 1e9:>12.3f}" \
                    if plain_flops else ""
                print(f"{f'{queries}x{width} h{heads}':<16}{tokens:>4}{count:>5}  {level:<10}{t.vanilla_s * 1e3:>11.1f}"
                      f"{t.patched_s * 1e3:>11.1f}{t.ratio:>7.3f}{t.spread:>8.3f}{limit}", flush=True)

    def training(self, attn2, x, context, shape, tokens, count, generator) -> Timed:
        """The layer's forward + backward, both rows holding the subjects, vs the unpatched layer's."""
        queries, width, heads = shape.queries, shape.width, shape.heads
        options = self.transformer_options(queries, width, training=True)
        extra = {**options, "n_heads": heads, "dim_head": width // heads, "attn_precision": None}
        patch = self.patch(width, tokens, count, generator, grad=True)
        ours = self.replaced(attn2, patch, extra)
        leaf = x.clone().requires_grad_()

        def step(layer):
            def run():
                layer(leaf, context).square().mean().backward()
                leaf.grad = None
                for binding in patch.bindings:
                    binding.keys.grad = binding.values.grad = None
            return run

        return timed(step(lambda n, c: attn2(n, context=c, transformer_options=options)), step(ours),
                     self.args, self.guard)

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
        t = timed(one_step(model), one_step(patched), self.args, self.guard)
        print(f"\nKSampler, 1 step: SD1.5 mini test model ({len(layers)} attn2 layers), {SAMPLER_PX} px, batch 1, "
              f"cfg 5 (one UNet call on [uncond, cond]), 1 subject x {SAMPLER_TOKENS} nested tokens")
        print(f"  vanilla {t.vanilla_s * 1e3:.1f} ms   patched {t.patched_s * 1e3:.1f} ms   ratio {t.ratio:.3f} "
              f"(spread {t.spread:.3f})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_arguments(parser, 5, "vanilla/patched pairs")
    parser.add_argument("--skip-sampler", action="store_true", help="leave out the KSampler step")
    parser.add_argument("--skip-training", action="store_true", help="leave out the layers' forward + backward")
    args = parser.parse_args(argv)

    from ..training.bootstrap import bootstrap_comfy

    bootstrap_comfy()  # ComfyUI first on sys.path, CPU mode
    import comfy.ldm.modules.attention as attention
    import torch

    torch.set_num_threads(args.threads)
    print(f"Nested attention overhead: patched / vanilla time, median of {args.repeats} pairs after "
          f"{args.warmup} warm-up (spread: interquartile range of the pairs' ratios)")
    print(f"machine: {machine(torch.get_num_threads())}; load average {load_average()}")
    print(f"torch {torch.__version__}, fp32 on CPU; host attention {attention.optimized_attention.__name__}; "
          f"timed: {'CPU time of this process' if args.cpu_time else 'wall time'}")
    print(f"SDXL shapes, batch 2 = [uncond, cond], {TEXT_TOKENS} text tokens, subject words in the cond row only "
          f"(train: in both rows)")
    print("limit = 1 + added FLOPs / plain FLOPs (attention_flops.py); RESULT: the worse of the two shapes, "
          "1 subject x 16 nested tokens\n")

    bench = Bench(args)
    bench.cases()
    if not args.skip_sampler:
        with torch.inference_mode():
            bench.sampler()

    def worst(level):
        return max(t[level].ratio for _, tokens, count, t in bench.results if tokens == 16 and count == 1)

    results = {"attn2_layer_1subj_16tok": worst("layer"), "decoupled_layer_16tok": worst("decoupled"),
               "attn2_attention_1subj_16tok": worst("attention")}
    if not args.skip_training:
        results["attn2_train_1subj_16tok"] = worst("train")
    results["block_overhead_1subj_16tok"] = worst("block")
    print_result(bench.guard, "pairs", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
