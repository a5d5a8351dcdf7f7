"""Nested attention: the value of a subject token, per query and per head.

In a cross-attention layer with text keys K and values V, the subject token s* keeps its key, but its
value is replaced by a query-dependent value computed from the subject's nested keys/values:

    v*_q  = softmax(q K~^T / sqrt(d)) V~
    out_q = sum_{j != s*} P_qj v_j + lambda * P_qs* v*_q,     P = softmax(q K^T / sqrt(d))

``lambda`` (the subject's strength, ``special_token_weight`` in the official code) scales the subject
column of the outer attention without renormalising it; lambda = 1 is the paper's mechanism. A word
of several BPE tokens replaces each of its tokens. Since out = P V + correction, the correction can
be added to a plain attention output computed by whoever owns the layer (another pack's patch:
``add_nested_values``): rows without any subject token are returned untouched, bit for bit. Where
the caller owns the plain attention, ``nested_attention`` gives the rows without a subject to the
caller's attention function alone and computes the others in one pass (``nested_rows``): the layer
then costs its plain attention plus the nested attention and the subject columns, nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

from .profiling import scope


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


class AttentionRule(Protocol):
    """How subjects change one cross-attention call: ``base`` is the layer's plain output
    softmax(q K^T / sqrt(d)) V [b, n_q, h*d] (the host's, or another pack's), q [b, n_q, h*d] and
    k, v [b, n_k, h*d] its projected inputs, ``heads`` the head count. Returns the new output of the
    same shape and dtype; rows where no subject's ``token_mask`` is set are returned bit for bit.
    Rules are registered by name in ``rules.py``."""

    def __call__(self, base: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                 subjects: Sequence[SubjectAttention]) -> torch.Tensor: ...


def subject_rows(subjects: Sequence[SubjectAttention]) -> torch.Tensor:
    """Indices [r] of the batch rows holding some subject's word."""
    return torch.stack([s.token_mask.any(-1) for s in subjects]).any(0).nonzero().squeeze(1)


def per_row(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows of a tensor given per batch row, or once for all rows (leading dim 1)."""
    return t.expand(rows.shape[0], *t.shape[1:]) if t.shape[0] == 1 else t[rows]


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax attention. q: [b, n_q, h*d], k/v: [b, n_k, h*d] -> [b, n_q, h*d]."""
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    return rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")


def nested_attention(q, k, v, heads: int, subjects: Sequence[SubjectAttention], plain=plain_attention) -> torch.Tensor:
    """Cross-attention with nested subject values, for a caller that owns the layer's plain attention.

    Shapes as in :func:`plain_attention`. Rows holding no subject token are ``plain(q, k, v, heads)``
    of those rows alone (the host passes its own attention function: bit for bit what the layer
    computes unpatched, as long as that function treats batch rows independently, as attention
    does), and so are rows whose subjects' query masks are 0 everywhere; rows holding one are
    computed by :func:`nested_rows`, so each row's plain attention runs once and the method adds only
    the nested attention and the subject columns (queries outside a region there: equal up to rounding).
    """
    active = [s for s in map(_acting, subjects) if bool(s.token_mask.any())]
    if not active:
        return plain(q, k, v, heads)
    rows = subject_rows(active)
    holds = torch.zeros(q.shape[0], dtype=torch.bool, device=rows.device).index_fill_(0, rows, True)
    others = (~holds).nonzero().squeeze(1)
    run = _contiguous(rows)
    take = (lambda t: t[run]) if run is not None else (lambda t: t[rows])
    with scope("rule"):  # the profiler's part for the method (here with the plain attention of these rows)
        corrected = nested_rows(take(q), take(k), take(v), heads,
                                [replace(s, token_mask=take(s.token_mask), query_mask=_rows_of(s.query_mask, rows),
                                         nested_keys=_rows_of(s.nested_keys, rows),
                                         nested_values=_rows_of(s.nested_values, rows)) for s in active])
    if others.shape[0] == 0:
        return corrected
    rest = _contiguous(others)
    pick = (lambda t: t[rest]) if rest is not None else (lambda t: t[others])
    base = plain(pick(q), pick(k), pick(v), heads)  # [b - r, n_q, h*d], the rows without a subject
    if run is not None:
        return torch.cat([base[:run.start], corrected, base[run.start:]])
    return corrected.new_empty(q.shape[0], *corrected.shape[1:]).index_copy(0, rows, corrected).index_copy(
        0, others, base.to(corrected.dtype))


EXPLICIT_NESTED_TOKENS = 64  # up to this many nested tokens nested_rows forms their weights itself, else a fused kernel


def nested_rows(q, k, v, heads: int, subjects: Sequence[SubjectAttention]) -> torch.Tensor:
    """Nested attention of rows that all hold some subject token: [r, n_q, h*d] for q [r, n_q, h*d].

    The outer softmax P over the text is formed once and multiplied once, by the text values with every
    subject token's row set to 0 (V_0) and, beside them, per subject lambda times the indicator of its tokens
    (and, where a query mask keeps the original value outside it, the subject tokens' own values V_T): one
    product gives sum_{j not in T} P_qj v_j and lambda P_qT (and P_qT-weighted v_T). Then per subject
    out_q += m_q lambda P_qT v*_q (for up to ``EXPLICIT_NESTED_TOKENS`` nested tokens as the share times
    their softmax weights, times V~; for more, v*_q by a fused attention) and (1 - m_q) sum_{j in T} P_qj v_j. Exact: with m = 1 this is out_q of the module docstring, term for term;
    the training backward then has one product with P to differentiate, no gather of its columns.
    Subject tensors are per row of q here, or shared (leading dim 1). P and the sums are float32
    whatever the input precision.
    """
    qh, kh, vh = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    compute = torch.promote_types(qh.dtype, torch.float32)
    token_masks = torch.stack([s.token_mask for s in subjects])  # [s, r, n_k] bool
    columns = [vh.masked_fill(token_masks.any(0)[:, None, :, None], 0).to(compute)]  # V_0 [r, h, n_k, d]
    for s, token_mask in zip(subjects, token_masks):
        columns.append((token_mask.to(compute) * s.strength)[:, None, :, None].expand(-1, qh.shape[1], -1, -1))
        if s.query_mask is not None:  # V_T [r, h, n_k, d]: the subject tokens' own values, kept outside the mask
            columns.append(vh.masked_fill(~token_mask[:, None, :, None], 0).to(compute))
    # the scale on the keys: n_k rows, not n_q (q (k s)^T = s q k^T)
    probs = (qh @ (kh * qh.shape[-1] ** -0.5).transpose(-1, -2)).softmax(-1, dtype=compute)  # P [r, h, n_q, n_k]
    out, *parts = (probs @ torch.cat(columns, -1)).split([c.shape[-1] for c in columns], -1)
    parts = iter(parts)
    for s in subjects:
        share = next(parts)  # lambda P_qT [r, h, n_q, 1]
        if s.query_mask is not None:
            query_mask = s.query_mask.to(compute)[:, None, :, None]  # [r or 1, 1, n_q, 1]
            share = share * query_mask
            out = out + next(parts) * (1 - query_mask)
        nested_k, nested_v = (rearrange(t.expand(qh.shape[0], *t.shape[1:]), "b m (h d) -> b h m d", h=heads)
                              .to(qh.dtype) for t in (s.nested_keys, s.nested_values))
        if nested_k.shape[-2] <= EXPLICIT_NESTED_TOKENS:
            # lambda P_qT v*_q = (lambda P_qT softmax(q K~^T / sqrt(d))) V~: the m nested weights times the share,
            # then one product with V~ (for few tokens m cheaper than v*_q, of the head width, times the share)
            weights = (qh @ (nested_k * qh.shape[-1] ** -0.5).transpose(-1, -2)).softmax(-1, dtype=compute)
            out = out + (weights * share) @ nested_v.to(compute)
        else:
            nested_value = F.scaled_dot_product_attention(qh, nested_k, nested_v)  # v*_q [r, h, n_q, d]
            out = torch.addcmul(out, nested_value.to(compute), share)
    return rearrange(out, "b h n d -> b n (h d)").to(q.dtype)


def add_nested_values(base, q, k, v, heads: int, subjects: list[SubjectAttention]) -> torch.Tensor:
    """Turn a plain attention output ``base`` = softmax(q k^T) v into nested attention.

    Adds, for each subject s with token set T_s and query mask m_s:
        m_s * (lambda_s * P_qT v*_q - sum_{j in T_s} P_qj v_j),    P_qT = sum_{j in T_s} P_qj
    Only rows holding a subject token are computed, and of the outer softmax P only the products
    with the subject columns (see :func:`_softmax_times`); P and the correction are accumulated in
    float32 whatever the input precision. Per-query tensors keep the layout of q ([b, n, h, d] seen
    as b h n d), so the correction adds to ``base`` without a transpose.
    """
    active = [s for s in subjects if bool(s.token_mask.any())]
    if not active:
        return base
    rows = subject_rows(active)  # [r]
    run = _contiguous(rows)  # a slice when the rows are one run (e.g. a single cond chunk)

    def take(t):  # t[rows], a view when the rows are one run
        return t[run] if run is not None else t[rows]

    qh, kh, vh = (rearrange(take(t), "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    token_masks = torch.stack([take(s.token_mask) for s in active]).float()  # [s, r, n_k]
    cols = token_masks.sum((0, 1)).nonzero().squeeze(1)  # positions of any subject's tokens [c]
    # per subject lambda_s * P_qT and P_qj for j in cols, in one product: [r, h, n_q, s * (1 + c)]
    per_subject = _softmax_times(qh.float(), kh.float(), _subject_columns(active, token_masks, cols))

    corrected = rearrange(take(base).float(), "b n (h d) -> b h n d", h=heads)
    replaced = None  # sum_s m_s P_qj [j in T_s] for j in cols  [r, h, n_q, c]
    for s, columns in zip(active, per_subject.split(1 + cols.shape[0], -1)):
        share, subject_columns = columns[..., :1], columns[..., 1:]  # [r, h, n_q, 1], [r, h, n_q, c]
        if s.query_mask is not None:
            query_mask = per_row(s.query_mask, rows).float()[:, None, :, None]  # [r, 1, n_q, 1]
            share, subject_columns = share * query_mask, subject_columns * query_mask
        nested_k, nested_v = (rearrange(per_row(t, rows), "b m (h d) -> b h m d", h=heads).to(qh.dtype)
                              for t in (s.nested_keys, s.nested_values))
        nested_value = F.scaled_dot_product_attention(qh, nested_k, nested_v)  # v*_q  [r, h, n_q, d]
        corrected = torch.addcmul(corrected, nested_value, share)  # a new float32 buffer, q's layout
        replaced = subject_columns if replaced is None else replaced + subject_columns
    values = vh[:, :, cols].float()  # [r, h, c, d]
    for j in range(cols.shape[0]):  # minus sum_j P_qj v_j; c is a handful of token positions
        corrected.addcmul_(replaced[..., j:j + 1], values[:, :, j:j + 1], value=-1)
    corrected = rearrange(corrected, "b h n d -> b n (h d)").to(base.dtype)
    if run is not None:
        return torch.cat([base[:run.start], corrected, base[run.stop:]])
    return base.index_copy(0, rows, corrected)


def _subject_columns(active: list[SubjectAttention], token_masks: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """[r, n_k, s * (1 + c)]: P @ this = per subject lambda_s * P_qT, then P_qj [j in T_s] for j in cols."""
    onehot = F.one_hot(cols, token_masks.shape[-1]).T.to(token_masks)  # [n_k, c]
    blocks = []
    for s, token_mask in zip(active, token_masks):  # token_mask [r, n_k]
        blocks += [s.strength * token_mask[:, :, None], onehot * token_mask[:, :, None]]
    return torch.cat(blocks, -1)


def outer_attention(qh: torch.Tensor, kh: torch.Tensor) -> torch.Tensor:
    """The outer attention P = softmax(q K^T / sqrt(d)): [.., n_q, n_k] for q [.., n_q, d], k [.., n_k, d]."""
    return torch.softmax(qh @ kh.transpose(-1, -2) * qh.shape[-1] ** -0.5, dim=-1)


def _softmax_times(qh: torch.Tensor, kh: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) @ selection -> [r, h, n_q, n], for selection [r, n_k, n].

    P is materialised ([r, h, n_q, n_k]: n_k is the prompt's 77 or so tokens, 12 MB per SDXL layer
    at 1024 px) and multiplied by the few selected columns. An attention call with the selection as
    values (zero-padded to the head width, as the fused kernels need) computes the same and never
    holds P, but does a full P V of head width: 1.3-2.3x slower forward and 1.6-2.1x slower forward
    and backward at SD1.5's and SDXL's attn2 shapes (2-core CPU, fp32).
    """
    return outer_attention(qh, kh) @ selection[:, None].to(qh.dtype)


def _acting(s: SubjectAttention) -> SubjectAttention:
    """The subject without the rows its query mask leaves out entirely (they keep the plain attention, bit for bit)."""
    if s.query_mask is None:
        return s
    return replace(s, token_mask=s.token_mask & s.query_mask.ne(0).any(-1)[:, None])


def _rows_of(t: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    """A per-row tensor's given rows (one shared for all rows, leading dim 1, stays as it is)."""
    return t if t is None or t.shape[0] == 1 else t[rows]


def _contiguous(rows: torch.Tensor) -> slice | None:
    """slice(first, last + 1) if the sorted indices ``rows`` are one run, else None."""
    first, last = int(rows[0]), int(rows[-1])
    return slice(first, last + 1) if last - first + 1 == rows.shape[0] else None
