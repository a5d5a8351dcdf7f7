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

Where the pack owns the layer's plain attention (no other pack's patch or attention override there,
no attention of the layer's own) and the first rule is nested attention, the rows without a subject
word go alone through the host's attention and the rows with one through the core's fused
``nested_attention``: the plain attention runs once per row, not twice. A layer that carries its own
attention (ComfyUI 0.38's ``comfy_attention``, e.g. from an int8-attention checkpoint) gets it for
its plain attention, as it does unpatched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ...nested_attention_core.attention import SubjectAttention, nested_attention
from ...nested_attention_core.errors import NestedAttentionError, SubjectWordError
from ...nested_attention_core.prompt import trimmed_pieces, word_pieces
from ...nested_attention_core.layers import LayerSpec
from ...nested_attention_core.methods import method_named
from ...nested_attention_core.profiling import scope
from ...nested_attention_core.rules import NESTED_RULE, rule_named
from ...nested_attention_core.subject import NestedSubject
from .binding import Binding, SubjectBinding
from .model import attention_modules, check_fits_model, model_layers
from .step import STEP_KEY, StepPrompts, check_subject_words, mark_negative, step_prompts, subject_name

SUBJECTS_KEY = "nested_attention_subjects"  # transformer options: AppliedSubjects
WRAPPER_KEY = "nested_attention"
RECORDER_KEY = "nested_attention_recorder"  # transformer options: an attention-map recorder (preview.py)


@dataclass(frozen=True)
class AppliedSubjects:
    """The subjects applied to a model, in order, and the model's cross-attention layers."""

    layers: tuple[LayerSpec, ...]
    bindings: tuple = ()
    layer_attention: tuple = ()  # (layer id, the layer's own attention: ComfyUI 0.38's comfy_attention), if any

    def __deepcopy__(self, memo):
        return self  # immutable; ModelPatcher.clone deep-copies model options

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(b.word for b in self.bindings)


def host_attention(q, k, v, extra, layer_attention=None):
    """The host's own attention, called exactly as an unpatched attn2 layer calls it.

    ``layer_attention`` is the layer's own (``comfy_attention`` of ComfyUI 0.38, passed there as
    ``preferred_attention``): its ``function``, when set, runs unless an attention override in the
    transformer options comes first, the order of 0.38's ``wrap_attn``. On 0.3.75 layers have none.
    """
    from comfy.ldm.modules import attention

    own = getattr(layer_attention, "function", None)
    function = own if own is not None and OVERRIDE_KEY not in extra else attention.optimized_attention
    return function(q, k, v, extra["n_heads"], attn_precision=extra.get("attn_precision"), transformer_options=extra)


OVERRIDE_KEY = "optimized_attention_override"  # transformer options: another pack's attention for every layer


class NestedAttentionPatch:
    """attn2 replace of one layer: the layer's plain attention plus the nested-value correction."""

    def __init__(self, layer_id: str, bindings: tuple, previous=None, layer_attention=None):
        self.layer_id = layer_id
        self.bindings = bindings
        self.previous = previous  # what the host would call in this layer (another pack's patch), wrapped
        self.layer_attention = layer_attention  # the layer's own attention (ComfyUI 0.38), or None

    def plain(self, q, k, v, extra):
        """What the layer computes unpatched: the other pack's patch, else the host's attention."""
        if self.previous is not None:
            return self.previous(q, k, v, extra)
        return host_attention(q, k, v, extra, self.layer_attention)

    def owns_attention(self, extra) -> bool:
        """Whether the plain attention is the host's default one, so that the core may run it for some rows."""
        return (self.previous is None and OVERRIDE_KEY not in extra and RECORDER_KEY not in extra
                and getattr(self.layer_attention, "function", None) is None)

    def __call__(self, q, k, v, extra):
        step = extra.get(STEP_KEY)
        if step is None:
            return self.plain(q, k, v, extra)
        with scope("patch"):  # the host-side work of the layer around the rules
            by_rule, applied, grid = self._subjects(q, k, extra, step)
        groups = list(by_rule.items())
        if groups and groups[0][0] == NESTED_RULE and self.owns_attention(extra):
            # the rows without a subject through the host's attention, on those rows alone; the core marks the rest "rule"
            base, out = None, nested_attention(q, k, v, extra["n_heads"], groups.pop(0)[1],
                                               plain=lambda q, k, v, heads: host_attention(q, k, v, extra))
        else:
            base = out = self.plain(q, k, v, extra)
        for rule, subjects in groups:
            with scope("rule"):
                out = rule_named(rule)(out, q, k, v, extra["n_heads"], subjects)
        recorder = extra.get(RECORDER_KEY)  # set only by the Preview node's probe run (which keeps base): no cost otherwise
        if recorder is not None and applied:
            recorder.record(self.layer_id, extra, grid, q, k, v, base, applied)
        return out

    def _subjects(self, q, k, extra, step):
        """The active bindings' subjects grouped by rule, in the bindings' order; (binding, subject) pairs; the grid."""
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
        return by_rule, applied, grid


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
        attn2[layer.key] = NestedAttentionPatch(layer.id, subjects.bindings, previous=theirs,
                                                layer_attention=dict(subjects.layer_attention).get(layer.id))
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
    applied = options.get(SUBJECTS_KEY) or AppliedSubjects(tuple(model_layers(model)), (), _layer_attention(model))
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
    options[SUBJECTS_KEY] = replace(applied, bindings=applied.bindings + (binding,))
    _ensure_step_wrapper(patched)
    return patched


def _layer_attention(model) -> tuple:
    """(layer id, its own attention) of the cross-attention layers that carry one (ComfyUI 0.38's
    ``comfy_attention``; read at each call, so a checkpoint's attention config loaded later counts)."""
    return tuple((layer_id, module.comfy_attention) for layer_id, module in attention_modules(model).items()
                 if getattr(module, "comfy_attention", None) is not None)


def applied_subjects(model) -> AppliedSubjects | None:
    """The subjects applied to a ModelPatcher (None when none is)."""
    return model.model_options.get("transformer_options", {}).get(SUBJECTS_KEY)


def _ensure_step_wrapper(model) -> None:
    from comfy.patcher_extension import WrappersMP

    if not model.get_wrappers(WrappersMP.CALC_COND_BATCH, WRAPPER_KEY):
        model.add_wrapper_with_key(WrappersMP.CALC_COND_BATCH, WRAPPER_KEY, _step_wrapper)
    if not model.get_wrappers(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY):
        model.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, _sample_wrapper)
