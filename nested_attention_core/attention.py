"""Nested attention: the value of a subject token, per query and per head.

In a cross-attention layer with text keys K and values V, the subject token s* keeps its key, but its
value is replaced by a query-dependent value computed from the subject's nested keys/values:

    v*_q  = softmax(q K~^T / sqrt(d)) V~
    out_q = sum_{j != s*} P_qj v_j + lambda * P_qs* v*_q,     P = softmax(q K^T / sqrt(d))

``lambda`` (the subject's strength, ``special_token_weight`` in the official code) scales the subject
column of the outer attention without renormalising it; lambda = 1 is the paper's mechanism. A word
of several BPE tokens replaces each of its tokens. Since out = P V + correction, the correction is
added to a plain attention output computed by whoever owns the layer (the host's own attention, or
another pack's patch): rows without any subject token are returned untouched, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange


@dataclass(frozen=True)
class SubjectAttention:
    """One subject's inputs to one attention call.

    nested_keys, nested_values: [b or 1, m, h*d]  the subject's nested keys/values for this layer
    token_mask: [b, n_text] bool                  positions of the subject word's tokens per row
    strength: lambda, the scale of the subject column of the outer attention
    query_mask: [b or 1, n_q] in [0, 1], optional; outside it the original value is kept
    """

    nested_keys: torch.Tensor
    nested_values: torch.Tensor
    token_mask: torch.Tensor
    strength: float = 1.0
    query_mask: torch.Tensor | None = None


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax attention. q: [b, n_q, h*d], k/v: [b, n_k, h*d] -> [b, n_q, h*d]."""
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    return rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")


def nested_attention(q, k, v, heads: int, subjects: list[SubjectAttention]) -> torch.Tensor:
    """Cross-attention with nested subject values. Shapes as in :func:`plain_attention`."""
    return add_nested_values(plain_attention(q, k, v, heads), q, k, v, heads, subjects)


def add_nested_values(base, q, k, v, heads: int, subjects: list[SubjectAttention]) -> torch.Tensor:
    """Turn a plain attention output ``base`` = softmax(q k^T) v into nested attention.

    Adds, for each subject s with token set T_s:  m_s * (lambda_s * P_qT v*_q - sum_{j in T_s} P_qj v_j)
    where P_qT = sum_{j in T_s} P_qj. Only rows holding a subject token are computed; the outer
    softmax and the correction are accumulated in float32 whatever the input precision.
    """
    active = [s for s in subjects if bool(s.token_mask.any())]
    if not active:
        return base
    rows = torch.stack([s.token_mask.any(-1) for s in active]).any(0).nonzero().squeeze(1)  # [r]
    qh, kh, vh = (rearrange(t[rows], "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    scale = qh.shape[-1] ** -0.5
    probs = (qh.float() @ kh.float().transpose(-1, -2) * scale).softmax(-1)  # [r, h, n_q, n_k]

    delta = torch.zeros(probs.shape[:-1] + (vh.shape[-1],), device=q.device, dtype=torch.float32)
    for s in active:
        delta = delta + _subject_correction(s, rows, qh, vh, probs, heads)
    corrected = base[rows].float() + rearrange(delta, "b h n d -> b n (h d)")
    return base.index_copy(0, rows, corrected.to(base.dtype))


def _subject_correction(s: SubjectAttention, rows, qh, vh, probs, heads: int) -> torch.Tensor:
    """m_s * (lambda_s * P_qT v*_q - sum_{j in T} P_qj v_j) for one subject, on the rows ``rows``."""
    token_mask = s.token_mask[rows]  # [r, n_k]
    cols = token_mask.any(0).nonzero().squeeze(1)  # union of the subject's token positions
    p_subject = probs[..., cols] * token_mask[:, None, None, cols]  # [r, h, n_q, c]
    replaced = p_subject @ vh[:, :, cols].float()  # sum_j P_qj v_j  [r, h, n_q, d]
    weight = p_subject.sum(-1, keepdim=True)  # P_qT  [r, h, n_q, 1]

    nested_k, nested_v = (_rows(t, rows) for t in (s.nested_keys, s.nested_values))
    nested_k, nested_v = (rearrange(t, "b m (h d) -> b h m d", h=heads).to(qh.dtype) for t in (nested_k, nested_v))
    nested_value = F.scaled_dot_product_attention(qh, nested_k, nested_v)  # v*_q  [r, h, n_q, d]

    correction = s.strength * weight * nested_value.float() - replaced
    if s.query_mask is not None:
        correction = correction * _rows(s.query_mask, rows).float()[:, None, :, None]
    return correction


def _rows(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Select batch rows of a tensor given per row or once for all rows (leading dim 1)."""
    return t.expand(rows.shape[0], *t.shape[1:]) if t.shape[0] == 1 else t[rows]
