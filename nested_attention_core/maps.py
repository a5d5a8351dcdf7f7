"""Attention maps of a subject in one cross-attention call, for the preview (diagnostics only).

Two per-query maps, like the paper's attention visualisations:
- ``word_share``: how much of the outer attention the subject word draws, P_qT = sum_{j in T} P_qj
  with P = softmax(q K^T / sqrt(d)), averaged over heads; in [0, 1].
- ``output_change``: how strongly the subject changes the layer output, ||out_q - base_q|| per query.
They are computed for all rows and heads at once: call them only when a preview asks for them.
"""
from __future__ import annotations

import torch
from einops import rearrange

from .attention import outer_attention


def word_share(q: torch.Tensor, k: torch.Tensor, heads: int, token_mask: torch.Tensor) -> torch.Tensor:
    """q [b, n_q, h*d], k [b, n_k, h*d], token_mask [b, n_k] bool -> P_qT [b, n_q] (float32)."""
    qh, kh = (rearrange(t.float(), "b n (h d) -> b h n d", h=heads) for t in (q, k))
    probs = outer_attention(qh, kh)  # [b, h, n_q, n_k]
    return (probs * token_mask[:, None, None, :].float()).sum(-1).mean(1)


def output_change(out: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """out, base [b, n_q, h*d] -> ||out_q - base_q|| [b, n_q] (float32)."""
    return (out.float() - base.float()).norm(dim=-1)
