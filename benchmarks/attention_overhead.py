"""What nested attention costs at sampling time: patched / vanilla time ratios on this machine.

    python benchmarks/attention_overhead.py [--repeats N] [--warmup N] [--threads N] [--skip-sampler]
                                            [--max-other-load CPUS] [--retry-budget S]

Three levels, each timed as vanilla/patched pairs (fp32, CPU, inference mode):

* one attn2 layer: the host's attention (``comfy.ldm.modules.attention.optimized_attention``) vs
  ``NestedAttentionPatch`` (the same attention plus the nested-value correction);
* one whole transformer block: ComfyUI's ``BasicTransformerBlock`` unpatched vs the same block with
  the patch installed through ``transformer_options["patches_replace"]["attn2"]``, as the host does;
* one KSampler step (euler, cfg 5, so one UNet call on [uncond, cond]) of the tiny SD1.5 test model
  (tests/fixtures/tiny_models.py): the model vs ``apply_subject`` of a random 16-token subject.

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
import importlib.util
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
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
MIN_RUN_S = 0.25  # a timed run of a short call repeats it at least this long


def load_by_path(name: str, relative: str):
    """A module of this repository loaded from its file (never via sys.path: see tests/fixtures/host.py)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def machine(threads: int) -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}
        name = f"{info.get('model name', name)} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    except OSError:
        pass
    return f"{name}, {len(os.sched_getaffinity(0))} logical CPUs, torch threads {threads}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class LoadGuard:
    """Notices other processes' CPU use (from /proc/stat) while a pair of runs is timed.

    On a shared machine another process's burst slows a 2-thread run many times over. A pair
    during which the rest of the machine used more than ``limit`` CPUs on average is run again, as
    long as ``budget`` seconds of re-runs remain; pairs kept anyway are counted as ``loaded``.
    """

    def __init__(self, limit: float, budget: float):
        self.limit, self.budget, self.loaded = limit, budget, 0
        self.cpus = os.cpu_count() or 1

    @staticmethod
    def _jiffies() -> tuple[int, int, int]:
        """(busy jiffies of all CPUs, all jiffies, this process's jiffies)."""
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
        with open("/proc/self/stat") as f:
            utime, stime = map(int, f.read().rsplit(")", 1)[1].split()[11:13])
        busy = user + nice + system + irq + softirq + steal
        return busy, busy + idle + iowait, utime + stime

    def start(self):
        self._mark, self._time = (self._jiffies() if os.path.exists("/proc/stat") else None), time.perf_counter()

    def clean(self) -> bool:
        """Whether the run since start() had the machine to itself (always True without /proc)."""
        if self._mark is None:
            return True
        busy, total, own = (b - a for a, b in zip(self._mark, self._jiffies()))
        others = max(0, busy - own) / max(total, 1) * self.cpus  # CPUs used by everyone else
        if others <= self.limit:
            return True
        if self.budget > 0:
            time.sleep(1.0)  # let the other process's burst pass
            self.budget -= time.perf_counter() - self._time
            return False
        self.loaded += 1
        return True


def paired(vanilla, patched, repeats: int, warmup: int, guard: LoadGuard) -> tuple[float, float, float]:
    """(median vanilla s, median patched s, median of the per-pair ratios patched / vanilla).

    Each pair runs back to back, in alternating order; a run repeats a short call until it lasts
    MIN_RUN_S (timed per call), so that the load guard has something to measure.
    """
    for _ in range(max(warmup, 1)):
        vanilla(), patched()
    start = time.perf_counter()
    vanilla()
    calls = max(1, math.ceil(MIN_RUN_S / (time.perf_counter() - start)))
    pairs = []
    while len(pairs) < repeats:
        times = {}
        guard.start()
        for fn in ((vanilla, patched) if len(pairs) % 2 == 0 else (patched, vanilla)):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[fn] = (time.perf_counter() - start) / calls
        if guard.clean():
            pairs.append((times[vanilla], times[patched]))
    return (statistics.median(v for v, _ in pairs), statistics.median(p for _, p in pairs),
            statistics.median(p / v for v, p in pairs))


def check_patched(plain, patched, what: str, uncond_row: bool = True) -> None:
    """Refuse to time a patch that does nothing: the cond row (last) must change, the uncond row not."""
    import torch

    if torch.equal(plain[-1], patched[-1]) or (uncond_row and not torch.equal(plain[0], patched[0])):
        raise RuntimeError(f"{what}: the nested attention patch did not change the cond row alone, so the "
                           f"benchmark would not time what sampling does")


class Bench:
    def __init__(self, pack, args):
        import torch
        from nested_attention_core.prompt import PromptWords

        self.torch, self.args, self.pack = torch, args, pack
        self.adapter = pack.nodes.host_adapter
        positive = PromptWords(tuple((w, (i + 1,)) for i, w in enumerate(POSITIVE_PROMPT.split())), TEXT_TOKENS)
        negative = PromptWords((("blurry", (1,)),), TEXT_TOKENS)
        self.step = self.adapter.StepPrompts(dict(zip(UUIDS, (negative, positive))), sigma=1.0)
        self.block_results = []  # (queries, tokens, subjects, block ratio)
        self.guard = LoadGuard(args.max_other_load, args.retry_budget)

    def patch(self, width: int, tokens: int, count: int, generator):
        """Our attn2 replace for one layer, with ``count`` random subjects of ``tokens`` nested tokens."""
        from nested_attention_core.subject import NestedSubject

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
        from nested_attention_core.layers import family_for_context_dim
        from nested_attention_core.subject import NestedSubject

        torch, adapter = self.torch, self.adapter
        tiny = load_by_path("nested_attention_bench_tiny_models", "tests/fixtures/tiny_models.py")
        out_dir = os.environ.get("NESTED_ATTENTION_TINY_MODELS") or REPO_ROOT / ".tiny_models"
        path = tiny.write_tiny_models(out_dir)["sd15"]
        comfy.utils.PROGRESS_BAR_ENABLED = False
        model, clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=False, output_clip=True)

        generator = torch.Generator().manual_seed(1)
        dim, layers = adapter.model_context_dim(model), adapter.model_layers(model)
        nested = {layer.id: (torch.randn(SAMPLER_TOKENS, layer.width, generator=generator),
                             torch.randn(SAMPLER_TOKENS, layer.width, generator=generator)) for layer in layers}
        subject = NestedSubject(word="person", tokens=torch.randn(SAMPLER_TOKENS, dim, generator=generator),
                                nested=nested, base_family=family_for_context_dim(dim), context_dim=dim)
        patched = adapter.apply_subject(model, subject, 1.0, 0.0, 1.0)
        text_encode = self.pack.nodes.text_encode.NestedAttentionTextEncode
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
    parser.add_argument("--repeats", type=int, default=5, help="timed vanilla/patched pairs; medians are kept")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pairs first (at least 1)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch.set_num_threads (default: the CPUs this process may use)")
    parser.add_argument("--max-other-load", type=float, default=0.25,
                        help="re-run a pair when other processes used more CPUs than this meanwhile")
    parser.add_argument("--retry-budget", type=float, default=300.0,
                        help="seconds spent at most on such re-runs; later pairs are kept whatever the load")
    parser.add_argument("--skip-sampler", action="store_true", help="leave out the KSampler step")
    args = parser.parse_args(argv)

    host = load_by_path("nested_attention_bench_host", "tests/fixtures/host.py")
    host.bootstrap_comfy()  # ComfyUI first on sys.path, CPU mode
    pack = host.load_pack()
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

    bench = Bench(pack, args)
    with torch.inference_mode():
        bench.layers_and_blocks()
        if not args.skip_sampler:
            bench.sampler()
    result = max(ratio for _, tokens, count, ratio in bench.block_results if tokens == 16 and count == 1)
    print(f"\nload average at the end {load_average()}; pairs kept although other processes were busy: "
          f"{bench.guard.loaded}")
    print(f"RESULT block_overhead_1subj_16tok={result:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
