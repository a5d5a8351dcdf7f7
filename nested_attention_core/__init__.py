"""Nested Attention (Patashnik et al., SIGGRAPH 2025) in pure torch: math, encoder, weight format,
model families and attention rules.

Never imports ComfyUI; the pack's host layer (``nodes/host/``) connects it to a model.
"""
from .attention import AttentionRule, SubjectAttention, add_nested_values, nested_attention, plain_attention
from .errors import (ModelMismatchError, NestedAttentionError, ReferenceImageError, SubjectWordError,
                     WeightsFormatError)
from .families import SD15, SDXL, ModelFamily, family_named, register_family
from .layers import LayerSpec
from .prompt import PromptWords, normalize_word
from .rules import RULES, rule_named
