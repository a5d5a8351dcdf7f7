"""Applying subjects to a ComfyUI model: one attn2 patch per layer, laid over whatever the layer has.

Applying clones the ModelPatcher and records the subjects under ``SUBJECTS_KEY`` in its transformer
options (an immutable ``AppliedSubjects``: the model's cross-attention layers and the bindings in the
order they were applied). Nothing is put into ``patches_replace``, so another pack never finds an
object of ours there: it installs, extends or replaces its own attn2 patch in any order, and
ComfyUI's own calls on it (``.to``, ``.models()``, cleanup) reach it directly.

At each sampling step a CALC_COND_BATCH wrapper (``_step_wrapper``) hands the UNet call transformer
options in which every layer's attn2 replace is a ``NestedAttentionPatch`` wrapping what the host
would have called there (the other pack's patch under ``(block, id, depth)`` or ``(block, id)``, else
the host's own attention), plus the step's prompts (``step.StepPrompts``). The patch computes that
plain output and adds the nested-value correction on the positive rows whose prompt holds a subject
word. The cond/uncond batch stays whole. Chained subjects share one patch per layer, so the outer
softmax is computed once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...nested_attention_core.attention import SubjectAttention
from ...nested_attention_core.errors import NestedAttentionError, SubjectWordError
from ...nested_attention_core.prompt import trimmed_pieces, word_pieces
from ...nested_attention_core.layers import LayerSpec
from ...nested_attention_core.methods import method_named
from ...nested_attention_core.profiling import scope
from ...nested_attention_core.rules import rule_named
from ...nested_attention_core.subject import NestedSubject
from .binding import Binding, SubjectBinding
from .model import check_fits_model, model_layers
from .step import STEP_KEY, StepPrompts, check_subject_words, mark_negative, step_prompts, subject_name

SUBJECTS_KEY = "nested_attention_subjects"  # transformer options: AppliedSubjects
WRAPPER_KEY = "nested_attention"
RECORDER_KEY = "nested_attention_recorder"  # transformer options: an attention-map recorder (preview.py)


@dataclass(frozen=True)
class AppliedSubjects:
    """The subjects applied to a model, in order, and the model's cross-attention layers."""

    layers: tuple[LayerSpec, ...]
    bindings: tuple = ()

    def __deepcopy__(self, memo):
        return self  # immutable; ModelPatcher.clone deep-copies model options

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(b.word for b in self.bindings)


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
        self.previous = previous  # what the host would call in this layer (another pack's patch), wrapped

    def __call__(self, q, k, v, extra):
        base = self.previous(q, k, v, extra) if self.previous is not None else host_attention(q, k, v, extra)
        step = extra.get(STEP_KEY)
        if step is None:
            return base
        with scope("patch"):  # the host-side work of the layer around the rules
            return self._with_subjects(base, q, k, v, extra, step)

    def _with_subjects(self, base, q, k, v, extra, step):
        """``base`` with the active bindings' subjects applied, grouped by rule, in the bindings' order."""
        by_rule: dict[str, list[SubjectAttention]] = {}  # rule name -> subjects, in the order of the bindings
        applied = []  # (binding, its SubjectAttention), for an attention-map recorder (preview.py)
        grid, areas = _token_grid(extra, q.shape[1]), step.chunk_areas(extra["uuids"])
        latent_batch = q.shape[0] // len(extra["cond_or_uncond"])
        for binding in self.bindings:
            if not binding.active(step.sigma):
                continue
            token_mask = step.token_mask(binding.word, extra["uuids"], extra["cond_or_uncond"], q.shape[0],
                                         k.shape[1], q.device)
            if token_mask is None:
                continue
            nested_keys, nested_values = binding.nested_kv(self.layer_id, q.device, q.dtype)
            query_mask = binding.query_mask(grid, areas, latent_batch, step.latent_size, q.device)
            subject = SubjectAttention(nested_keys, nested_values, token_mask, binding.strength, query_mask)
            by_rule.setdefault(binding.rule, []).append(subject)
            applied.append((binding, subject))
        out = base
        for rule, subjects in by_rule.items():
            with scope("rule"):
                out = rule_named(rule)(out, q, k, v, extra["n_heads"], subjects)
        recorder = extra.get(RECORDER_KEY)  # set only by the Preview node's probe run: no cost otherwise
        if recorder is not None and applied:
            recorder.record(self.layer_id, extra, grid, q, k, v, base, applied)
        return out


def _token_grid(extra, n_queries: int) -> tuple[int, int]:
    """(h, w) of the layer's image tokens, from the activation shape the host reports."""
    shape = extra.get("activations_shape")
    if shape is not None and shape[-2] * shape[-1] == n_queries:
        return int(shape[-2]), int(shape[-1])
    height, width = extra["original_shape"][-2:]
    factor = math.sqrt(height * width / n_queries)
    return math.ceil(height / factor), math.ceil(width / factor)


def step_transformer_options(transformer_options: dict, step: StepPrompts) -> dict:
    """The transformer options of one UNet call: the step's prompts, and every layer's attn2 replace
    laid over what the host would call there. ``transformer_options`` is left as it is."""
    options = dict(transformer_options)
    options[STEP_KEY] = step
    subjects = options.get(SUBJECTS_KEY)
    if subjects is None:
        return options
    replaces = dict(options.get("patches_replace", {}))
    attn2 = dict(replaces.get("attn2", {}))
    for layer in subjects.layers:
        theirs = attn2.get(layer.key, attn2.get(layer.key[:2]))  # the host's own look-up order
        attn2[layer.key] = NestedAttentionPatch(layer.id, subjects.bindings, previous=theirs)
    replaces["attn2"] = attn2
    options["patches_replace"] = replaces
    return options


def model_call_options(model, step: StepPrompts) -> dict:
    """The transformer options of a UNet call made without the host's sampler (the trainer's): those of
    ``step_transformer_options`` plus the ModelPatcher's wrappers (e.g. ``checkpointing.checkpointed``), merged
    in as the sampler merges them (comfy/sampler_helpers.py). ``model`` is left as it is."""
    from comfy.patcher_extension import copy_nested_dicts, merge_nested_dicts

    options = step_transformer_options(model.model_options["transformer_options"], step)
    options["wrappers"] = merge_nested_dicts(copy_nested_dicts(options.get("wrappers", {})), model.wrappers)
    return options


def _sample_wrapper(executor, *args, **kwargs):
    """OUTER_SAMPLE wrapper: before the first step, checks the subject words against every prompt the
    guider holds (by name, whatever order it later calls the model in) and marks its negative conds."""
    guider = executor.class_obj
    subjects = guider.model_options.get("transformer_options", {}).get(SUBJECTS_KEY)
    if subjects is not None and subjects.bindings:
        check_subject_words(subjects.bindings, guider.conds)
        mark_negative(guider.conds)  # the guider's own copies for this run: the user's conditioning is untouched
    return executor(*args, **kwargs)


def _step_wrapper(executor, model, conds, x_in, timestep, model_options):
    """CALC_COND_BATCH wrapper: lays the subjects over this UNet call."""
    transformer_options = model_options.get("transformer_options", {})
    subjects = transformer_options.get(SUBJECTS_KEY)
    if subjects is None or not subjects.bindings:
        return executor(model, conds, x_in, timestep, model_options)
    options = dict(model_options)
    options["transformer_options"] = step_transformer_options(transformer_options, step_prompts(conds, x_in, timestep))
    return executor(model, conds, x_in, timestep, options)


def apply_subject(model, subject: NestedSubject, strength: float, start_at: float = 0.0, end_at: float = 1.0,
                  region=None, rule: str | None = None, node: str | None = None):
    """A clone of ``model`` whose cross-attention applies ``subject`` by the rule of its method (nested
    values for nested attention), or by the named ``rule``. Chains: apply one subject after another.
    ``node`` names the node that applied it (e.g. "Apply Nested Attention node #12"), for errors found
    at sampling time."""
    for name, value in (("weight", strength), ("start_at", start_at), ("end_at", end_at)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise NestedAttentionError(f"Apply Nested Attention: {name} is {value!r}; give a finite number "
                                       f"(weight 1.0 is the paper's method, start_at 0 and end_at 1 the whole schedule)")
    if region is not None and not bool(region.isfinite().all()):
        raise NestedAttentionError(f"Apply Nested Attention: the region mask (attn_mask) of subject {subject.word!r} "
                                   "holds NaN or infinite values; give a mask with values in [0, 1]")
    rule = rule or method_named(subject.method).rule
    rule_named(rule)  # an unknown name fails here, not at the first step
    check_fits_model(model, subject.base_family, subject.context_dim, subject.layers(), subject.describe())
    sampling = model.get_model_object("model_sampling")
    binding = SubjectBinding(subject, float(strength), float(sampling.percent_to_sigma(start_at)),
                             float(sampling.percent_to_sigma(end_at)), region, rule, node)
    return apply_binding(model, binding)


def apply_binding(model, binding: Binding):
    """A clone of ``model`` with ``binding`` added to every attn2 layer.

    The active subjects of a layer are grouped by rule, and each group, in the order of the
    bindings, is applied to the output of the previous one.
    """
    patched = model.clone()
    options = patched.model_options["transformer_options"]
    applied = options.get(SUBJECTS_KEY) or AppliedSubjects(tuple(model_layers(model)))
    if binding.word in applied.words:
        raise SubjectWordError(
            f"subject word {binding.word!r} is already bound by an earlier ApplyNestedAttention on this model: "
            f"give each subject its own word (e.g. 'man' and 'woman'), or apply only one")
    for other in applied.bindings:
        shared = trimmed_pieces(word_pieces(other.word))
        if shared == trimmed_pieces(word_pieces(binding.word)):
            raise SubjectWordError(
                f"{subject_name(other)} and {subject_name(binding)} both act on the token {' '.join(shared)!r}: "
                f"one token can carry one subject. Give each subject a word of its own (e.g. 'man' and 'woman')")
    options[SUBJECTS_KEY] = AppliedSubjects(applied.layers, applied.bindings + (binding,))
    _ensure_step_wrapper(patched)
    return patched


def applied_subjects(model) -> AppliedSubjects | None:
    """The subjects applied to a ModelPatcher (None when none is)."""
    return model.model_options.get("transformer_options", {}).get(SUBJECTS_KEY)


def _ensure_step_wrapper(model) -> None:
    from comfy.patcher_extension import WrappersMP

    if not model.get_wrappers(WrappersMP.CALC_COND_BATCH, WRAPPER_KEY):
        model.add_wrapper_with_key(WrappersMP.CALC_COND_BATCH, WRAPPER_KEY, _step_wrapper)
    if not model.get_wrappers(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY):
        model.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, _sample_wrapper)
