"""The two baselines the toy world measures nested attention against, as attention rules.

Both read the subject encoder's tokens e [N, C] of a reference image (C = the text context width)
through the per-layer projections, and act, in every cross-attention layer, on the rows whose
prompt holds the subject word (positions T_s). q, K, V are the layer's queries and text
keys/values, d the head width, ``base`` the layer's plain output softmax(q K^T / sqrt(d)) V, and
m(q) the subject's query mask (1 without a region).

- single token (PhotoMaker / E4T): the pooled token e_bar = mean_i e_i replaces the subject word's
  text embedding. With the layer's own frozen text projections W_k, W_v (the encoder's per-layer
  projections, initialised from them and never trained):
      K'_j = e_bar W_k,  V'_j = strength * e_bar W_v  for j in T_s;  K'_j = K_j, V'_j = V_j otherwise
      out_q = base_q + m(q) (softmax(q K'^T / sqrt(d)) V' - base_q)
- decoupled cross-attention (IP-Adapter, scale = strength): a second attention over the subject
  tokens through trainable per-layer projections (IP-Adapter's to_k_ip / to_v_ip)
      out_q = base_q + m(q) * strength * softmax(q K_ip^T / sqrt(d)) V_ip,  K_ip = e W~k, V_ip = e W~v
"""
from __future__ import annotations

from typing import Sequence

import torch

from .attention import SubjectAttention, per_row, plain_attention, subject_rows


def single_token_attention(base, q, k, v, heads: int, subjects: Sequence[SubjectAttention]) -> torch.Tensor:
    """The single-token rule (module docstring). q: [b, n_q, h*d], k/v: [b, n_k, h*d].

    A subject's key/value is the mean over its m nested keys/values ([b or 1, m, h*d]); the
    projections are bias-free, so that is also the projection of the mean token. Several subjects
    replace their words together (as several PhotoMaker words do); their query masks combine as
    their maximum.
    """
    active = [s for s in subjects if bool(s.token_mask.any())]
    if not active:
        return base
    rows = subject_rows(active)
    keys, values = k[rows], v[rows]  # [r, n_k, h*d]
    gate = torch.zeros(rows.shape[0], q.shape[1], device=q.device)  # m(q) per row [r, n_q]
    for s in active:
        positions = s.token_mask[rows][..., None]  # [r, n_k, 1]
        key = per_row(s.nested_keys, rows).mean(1, keepdim=True)  # [r, 1, h*d]
        value = per_row(s.nested_values, rows).mean(1, keepdim=True) * s.strength
        keys = torch.where(positions, key.to(k.dtype), keys)
        values = torch.where(positions, value.to(v.dtype), values)
        gate = torch.maximum(gate, _gate(s, rows, q.shape[1]))
    replaced = plain_attention(q[rows], keys, values, heads).float()
    out = torch.lerp(base[rows].float(), replaced, gate[..., None])
    return base.index_copy(0, rows, out.to(base.dtype))


def decoupled_attention(base, q, k, v, heads: int, subjects: Sequence[SubjectAttention]) -> torch.Tensor:
    """The decoupled rule (module docstring): base plus each subject's gated image attention."""
    active = [s for s in subjects if bool(s.token_mask.any())]
    if not active:
        return base
    rows = subject_rows(active)
    queries, out = q[rows], base[rows].float()
    for s in active:
        image_keys, image_values = (per_row(t, rows).to(q.dtype) for t in (s.nested_keys, s.nested_values))
        image = plain_attention(queries, image_keys, image_values, heads).float()  # [r, n_q, h*d]
        out = torch.addcmul(out, image, (s.strength * _gate(s, rows, q.shape[1]))[..., None])
    return base.index_copy(0, rows, out.to(base.dtype))


def _gate(s: SubjectAttention, rows: torch.Tensor, n_queries: int) -> torch.Tensor:
    """[r, n_q]: the subject's query mask on the rows holding its word, 0 on the other rows."""
    holds = s.token_mask[rows].any(-1).float()[:, None]  # [r, 1]
    if s.query_mask is None:
        return holds.expand(-1, n_queries)
    return holds * per_row(s.query_mask, rows).float()
