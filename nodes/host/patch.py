"""Applying a subject to a ComfyUI model: the attn2 hooks and the per-step prompt wrapper.

How a subject reaches the attention at sampling time, without breaking the cond/uncond batch:
- NestedAttentionTextEncode puts the prompt's words and positions (``PromptWords``) under
  ``PROMPT_KEY`` in each conditioning dict; the host keeps such keys and gives each cond a uuid.
- A CALC_COND_BATCH wrapper maps uuid -> PromptWords for the step, checks that every subject word is
  in a positive prompt, and passes this ``StepPrompts`` on in the transformer options.
- One attn2 replace per layer (``NestedAttentionPatch``) computes the layer's plain attention (the
  host's, or the patch another pack installed before us, which it wraps and calls) and adds the
  nested-value correction on the positive rows whose prompt holds the subject word.
Applying clones the ModelPatcher and installs new patch objects: nothing an upstream clone shares is
mutated. Chained subjects merge into one patch per layer, so the outer softmax is computed once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Protocol

import torch
import torch.nn.functional as F

from ...nested_attention_core.attention import SubjectAttention
from ...nested_attention_core.errors import SubjectWordError
from ...nested_attention_core.rules import NESTED, rule_named
from ...nested_attention_core.subject import NestedSubject
from .model import check_fits_model, model_layers

PROMPT_KEY = "nested_attention_prompt"  # conditioning dict: PromptWords of the encoded prompt
STEP_KEY = "nested_attention_step"  # transformer options: StepPrompts of the current step
WORDS_KEY = "nested_attention_words"  # transformer options: the words of the subjects applied so far
WRAPPER_KEY = "nested_attention"
RECORDER_KEY = "nested_attention_recorder"  # transformer options: an attention-map recorder (preview.py)
POSITIVE = 0  # cond_or_uncond value of positive-prompt chunks


class Binding(Protocol):
    """What every attn2 patch of ours asks of an applied subject (``apply_binding``).

    ``SubjectBinding`` is the frozen subject of the Apply node; the trainer's binding hands out the
    live encoder outputs of its batch. ``rule`` names how the subjects change attention
    (``nested_attention_core.rules``)."""

    word: str
    strength: float
    rule: str

    def active(self, sigma: float) -> bool: ...

    def nested_kv(self, layer_id: str, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Nested keys/values [1 or rows, m, width] of one layer."""

    def query_mask(self, grid: tuple[int, int], rows: int, device) -> Optional[torch.Tensor]:
        """Where the subject acts, [rows, h*w] in [0, 1]; None: everywhere."""


@dataclass(frozen=True, eq=False)
class SubjectBinding:
    """One applied subject: its nested keys/values, word, strength and when/where it acts."""

    subject: NestedSubject
    strength: float
    sigma_start: float  # active while sigma_end <= sigma <= sigma_start
    sigma_end: float
    region: torch.Tensor | None = None  # [1 or latent batch, H, W] in [0, 1]
    rule: str = NESTED  # how the subject changes attention (nested_attention_core.rules)
    _cache: dict = field(default_factory=dict, repr=False)

    def __deepcopy__(self, memo):
        return self

    @property
    def word(self) -> str:
        return self.subject.word

    def active(self, sigma: float) -> bool:
        return self.sigma_end <= sigma <= self.sigma_start

    def nested_kv(self, layer_id: str, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Nested keys/values [1, m, width] of one layer on the attention's device and dtype."""
        key = ("kv", layer_id, device, dtype)
        if key not in self._cache:
            keys, values = self.subject.nested[layer_id]
            self._cache[key] = tuple(t.to(device=device, dtype=dtype)[None] for t in (keys, values))
        return self._cache[key]

    def query_mask(self, grid: tuple[int, int], rows: int, device) -> torch.Tensor | None:
        """The region mask resized to a layer's token grid: [rows, h*w], row r -> latent r % batch."""
        if self.region is None:
            return None
        key = ("mask", grid, rows, device)
        if key not in self._cache:
            small = F.interpolate(self.region[:, None].float(), size=grid, mode="bilinear", align_corners=False)
            small = small.flatten(1).clamp(0, 1)
            self._cache[key] = small[torch.arange(rows) % small.shape[0]].to(device)
        return self._cache[key]


@dataclass
class StepPrompts:
    """Per sampling step: which prompt each cond uuid carries, the current sigma, and a mask cache."""

    prompts: dict
    sigma: float
    _masks: dict = field(default_factory=dict)

    def __deepcopy__(self, memo):
        return self

    def token_mask(self, word: str, uuids, cond_or_uncond, rows: int, length: int, device) -> torch.Tensor | None:
        """Bool [rows, length]: the word's positions in each positive row; None if in no row."""
        key = (word, tuple(uuids), tuple(cond_or_uncond), rows, length, device)
        if key not in self._masks:
            mask = torch.zeros(rows, length, dtype=torch.bool)
            per_chunk = rows // len(cond_or_uncond)
            for chunk, (uuid, kind) in enumerate(zip(uuids, cond_or_uncond)):
                prompt = self.prompts.get(uuid)
                if kind == POSITIVE and prompt is not None:
                    mask[chunk * per_chunk:(chunk + 1) * per_chunk] = prompt.token_mask(word, length)
            self._masks[key] = mask.to(device) if mask.any() else None
        return self._masks[key]


def host_attention(q, k, v, extra):
    """The host's own attention, called exactly as an unpatched attn2 layer calls it."""
    from comfy.ldm.modules import attention

    return attention.optimized_attention(q, k, v, extra["n_heads"], attn_precision=extra.get("attn_precision"),
                                         transformer_options=extra)


class NestedAttentionPatch:
    """attn2 replace of one layer: the layer's plain attention plus the nested-value correction."""

    def __init__(self, layer_id: str, bindings: tuple, previous=None):
        self.layer_id = layer_id
        self.bindings = bindings
        self.previous = previous  # an attn2 replace installed before ours (another pack): wrapped

    def __deepcopy__(self, memo):
        return self  # immutable; ModelPatcher.clone deep-copies model options

    def with_binding(self, binding: SubjectBinding) -> "NestedAttentionPatch":
        return NestedAttentionPatch(self.layer_id, self.bindings + (binding,), self.previous)

    def __call__(self, q, k, v, extra):
        base = self.previous(q, k, v, extra) if self.previous is not None else host_attention(q, k, v, extra)
        step = extra.get(STEP_KEY)
        if step is None:
            return base
        by_rule: dict[str, list[SubjectAttention]] = {}  # rule name -> subjects, in the order of the bindings
        applied = []  # (binding, its SubjectAttention), for an attention-map recorder (preview.py)
        for binding in self.bindings:
            if not binding.active(step.sigma):
                continue
            token_mask = step.token_mask(binding.word, extra["uuids"], extra["cond_or_uncond"], q.shape[0],
                                         k.shape[1], q.device)
            if token_mask is None:
                continue
            nested_keys, nested_values = binding.nested_kv(self.layer_id, q.device, q.dtype)
            query_mask = binding.query_mask(_token_grid(extra, q.shape[1]), q.shape[0], q.device)
            subject = SubjectAttention(nested_keys, nested_values, token_mask, binding.strength, query_mask)
            by_rule.setdefault(binding.rule, []).append(subject)
            applied.append((binding, subject))
        out = base
        for rule, subjects in by_rule.items():
            out = rule_named(rule)(out, q, k, v, extra["n_heads"], subjects)
        recorder = extra.get(RECORDER_KEY)  # set only by the Preview node's probe run: no cost otherwise
        if recorder is not None and applied:
            recorder.record(self.layer_id, extra, _token_grid(extra, q.shape[1]), q, k, v, base, applied)
        return out


def _token_grid(extra, n_queries: int) -> tuple[int, int]:
    """(h, w) of the layer's image tokens, from the activation shape the host reports."""
    shape = extra.get("activations_shape")
    if shape is not None and shape[-2] * shape[-1] == n_queries:
        return int(shape[-2]), int(shape[-1])
    height, width = extra["original_shape"][-2:]
    factor = math.sqrt(height * width / n_queries)
    return math.ceil(height / factor), math.ceil(width / factor)


def _step_wrapper(executor, model, conds, x_in, timestep, model_options):
    """CALC_COND_BATCH wrapper: hands the step's prompts to the patches, checks subject words."""
    words = model_options.get("transformer_options", {}).get(WORDS_KEY)
    if not words:
        return executor(model, conds, x_in, timestep, model_options)
    prompts = {c["uuid"]: c[PROMPT_KEY] for cs in conds if cs for c in cs if PROMPT_KEY in c}
    check_subject_words(words, conds[0] or [])
    options = dict(model_options)
    options["transformer_options"] = dict(model_options.get("transformer_options", {}))
    options["transformer_options"][STEP_KEY] = StepPrompts(prompts, float(timestep.max()))
    return executor(model, conds, x_in, timestep, options)


def check_subject_words(words: list[str], positive_conds: list[dict]) -> None:
    """Every subject word must be in some positive prompt, else a SubjectWordError naming both."""
    prompts = [c[PROMPT_KEY] for c in positive_conds if PROMPT_KEY in c]
    for word in words:
        if not prompts:
            raise SubjectWordError(
                f"subject word {word!r}: the positive prompt carries no word positions. Encode the positive "
                f"prompt with 'Nested Attention Text Encode' (NestedAttentionTextEncode) instead of CLIPTextEncode")
        if not any(p.positions(word) for p in prompts):
            shown = " | ".join(p.text() for p in prompts)
            raise SubjectWordError(
                f"subject word {word!r} is not in the positive prompt (its words: {shown!r}). "
                f"Put the word in the prompt, or set the subject's word to one of the prompt's words")


def apply_subject(model, subject: NestedSubject, strength: float, start_at: float = 0.0, end_at: float = 1.0,
                  region=None, rule: str = NESTED):
    """A clone of ``model`` whose cross-attention gives ``subject`` nested values (or applies it by
    the named ``rule``). Chains: apply one subject after another."""
    rule_named(rule)  # an unknown name fails here, not at the first step
    check_fits_model(model, subject.base_family, subject.context_dim, subject.layers(), f"subject {subject.word!r}")
    sampling = model.get_model_object("model_sampling")
    binding = SubjectBinding(subject, float(strength), float(sampling.percent_to_sigma(start_at)),
                             float(sampling.percent_to_sigma(end_at)), region, rule)
    return apply_binding(model, binding)


def apply_binding(model, binding: Binding):
    """A clone of ``model`` with ``binding`` added to every attn2 layer.

    The active subjects of a layer are grouped by rule, and each group, in the order of the
    bindings, is applied to the output of the previous one.
    """
    patched = model.clone()
    options = patched.model_options["transformer_options"]
    if binding.word in options.get(WORDS_KEY, ()):
        raise SubjectWordError(
            f"subject word {binding.word!r} is already bound by an earlier ApplyNestedAttention on this model: "
            f"give each subject its own word (e.g. 'man' and 'woman'), or apply only one")
    options[WORDS_KEY] = tuple(options.get(WORDS_KEY, ())) + (binding.word,)
    replaces = options.get("patches_replace", {}).get("attn2", {})
    for layer in model_layers(model):
        current = replaces.get(layer.key, replaces.get(layer.key[:2]))
        if isinstance(current, NestedAttentionPatch):
            patch = current.with_binding(binding)
        else:
            patch = NestedAttentionPatch(layer.id, (binding,), previous=current)
        patched.set_model_attn2_replace(patch, *layer.key)
    _ensure_step_wrapper(patched)
    return patched


def _ensure_step_wrapper(model) -> None:
    from comfy.patcher_extension import WrappersMP

    if not model.get_wrappers(WrappersMP.CALC_COND_BATCH, WRAPPER_KEY):
        model.add_wrapper_with_key(WrappersMP.CALC_COND_BATCH, WRAPPER_KEY, _step_wrapper)
