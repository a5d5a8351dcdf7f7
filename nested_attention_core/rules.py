"""Attention rules by name: how a binding's subjects change a cross-attention layer.

A rule follows ``attention.AttentionRule``: ``rule(base, q, k, v, heads, subjects) -> out``, where
each ``SubjectAttention`` carries one subject's nested keys/values for the layer, the positions of
its word in each row, its strength and its optional query mask. Bindings, the trainer's methods
and the toy world name a rule; ``rule_named`` resolves the name.
"""
from __future__ import annotations

from .attention import AttentionRule, add_nested_values
from .baselines import decoupled_attention, single_token_attention
from .errors import NestedAttentionError

NESTED_RULE = "nested"
RULES: dict[str, AttentionRule] = {
    NESTED_RULE: add_nested_values,  # the paper's nested attention
    "single_token": single_token_attention,
    "decoupled": decoupled_attention,
}


def rule_named(name: str) -> AttentionRule:
    try:
        return RULES[name]
    except KeyError:
        raise NestedAttentionError(f"unknown attention rule {name!r}; known rules: {sorted(RULES)}") from None
