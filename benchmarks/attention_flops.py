"""The arithmetic of one cross-attention layer, plain and with subjects: the limit a patched layer's
time ratio can reach (counted, multiply-add = 2 FLOPs; softmax exponentials and memory passes left out).

A layer (ComfyUI's ``CrossAttention``) of inner width w on n_q queries of width w, n_k text tokens
of width C, batch B: four projections (to_q, to_out: n_q w^2 each per row; to_k, to_v: n_k C w) and
the text attention (q K^T and P V: n_q n_k w each). Subjects with N nested tokens on R of the rows
add, per subject: the nested attention (q K~^T, P~ V~: n_q N w each), the subject column of the
outer softmax (q k_s: n_q w) and the correction out_q += P_qs v*_q (n_q w). Decoupled
cross-attention (IP-Adapter) adds the image attention and its scaled sum (the same, less the column).

Training (forward + backward, frozen weights, the context without gradient): the backward of a
projection gives only its input's gradient (to_q, to_out: as much again as forward; to_k, to_v:
none); the text attention's backward recomputes q K^T and forms dP = dO V^T and dq = dS K (3 more
products); the nested attention's backward also gives its keys' and values' gradients (5 products).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerShape:
    queries: int  # n_q
    width: int  # w = heads * head width
    heads: int
    text_tokens: int = 77  # n_k
    context_dim: int = 2048  # C (SDXL)
    batch: int = 2  # B: [uncond, cond] when sampling

    def plain(self, training: bool = False) -> float:
        """FLOPs of the unpatched layer (forward, or forward + backward)."""
        b, n, w, nk = self.batch, self.queries, self.width, self.text_tokens
        projections = 2 * b * (2 * n * w * w + 2 * nk * self.context_dim * w)
        attention = 2 * b * 2 * n * nk * w
        if not training:
            return projections + attention
        return projections + 2 * b * 2 * n * w * w + attention + 2 * b * 3 * n * nk * w

    def attention(self, training: bool = False) -> float:
        """FLOPs of the text attention alone (what the host's attention function computes)."""
        products = 5 if training else 2
        return 2 * self.batch * products * self.queries * self.text_tokens * self.width

    def nested(self, tokens: int, subjects: int, rows: int, training: bool = False) -> float:
        """FLOPs nested attention adds: per subject on each of ``rows`` rows."""
        n, w = self.queries, self.width
        per_row = 2 * (2 * n * tokens * w) + 2 * n * w + 2 * n * w
        if training:
            per_row += 2 * (5 * n * tokens * w) + 2 * (3 * n * w)
        return subjects * rows * per_row

    def decoupled(self, tokens: int, subjects: int, rows: int, training: bool = False) -> float:
        """FLOPs decoupled cross-attention (IP-Adapter) adds."""
        n, w = self.queries, self.width
        per_row = 2 * (2 * n * tokens * w) + 2 * n * w
        if training:
            per_row += 2 * (5 * n * tokens * w) + 2 * n * w
        return subjects * rows * per_row
