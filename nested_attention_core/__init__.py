"""Nested Attention (Patashnik et al., SIGGRAPH 2025) in pure torch: math, encoder, weight format.

Never imports ComfyUI; the pack's host adapter (nodes/host_adapter.py) connects it to a model.
"""
from .attention import SubjectAttention, add_nested_values, nested_attention, plain_attention
from .errors import (ModelMismatchError, NestedAttentionError, ReferenceImageError, SubjectWordError,
                     WeightsFormatError)
from .layers import LayerSpec, sd15_layers, sdxl_layers
from .prompt import PromptWords, normalize_word
