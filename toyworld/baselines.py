"""The benchmark's two baselines, trained by the same trainer and encoder as nested attention.

Both read the subject encoder's tokens e [N, C] of a reference image (C = the text context width)
and act, in every cross-attention layer, on the rows whose prompt holds the subject word (positions
T_s). q, K, V are the layer's queries and text keys/values, d the head width, ``base`` the layer's
plain output softmax(q K^T / sqrt(d)) V, and m(q) the subject's query mask (1 without a region).

- single token (PhotoMaker / E4T): the pooled token e_bar = mean_i e_i replaces the subject word's
  text embedding. With the layer's own frozen text projections W_k, W_v (the encoder's per-layer
  projections, initialised from them and never trained):
      K'_j = e_bar W_k,  V'_j = lambda * e_bar W_v  for j in T_s;  K'_j = K_j, V'_j = V_j otherwise
      out_q = base_q + m(q) (softmax(q K'^T / sqrt(d)) V' - base_q)
- decoupled cross-attention (IP-Adapter, scale lambda = 1): a second attention over the image tokens
  through trainable per-layer projections (IP-Adapter's to_k_ip / to_v_ip, our nested projections)
      out_q = base_q + m(q) * lambda * softmax(q K_ip^T / sqrt(d)) V_ip,  K_ip = e W~k, V_ip = e W~v

lambda is the binding's strength. Rows without the subject word are returned bit for bit.

``SINGLE_TOKEN`` and ``DECOUPLED`` are training methods in the shape ``training/method.py`` defines
(``open_session(config, method=SINGLE_TOKEN)``). At inference, ``method.subject(...)`` encodes a
subject and ``apply_method`` applies it to a ComfyUI model; nested attention, the trainer's
``NESTED``, goes through the same two calls. Pure torch, the core and the trainer's ``method``
module: never imports ComfyUI.
"""
from __future__ import annotations

import torch

from nested_attention_core.attention import SubjectAttention, plain_attention
from nested_attention_core.subject import NestedSubject, encode_subject

from .host import training_package

training_package()  # the trainer's package by path; its method module needs only torch and the core
from nested_attention_training.method import NestedMethod  # noqa: E402


def single_token_attention(base, q, k, v, heads: int, subjects: list[SubjectAttention]) -> torch.Tensor:
    """The single-token rule (module docstring). q: [b, n_q, h*d], k/v: [b, n_k, h*d].

    A subject's key/value is the mean over its m nested keys/values ([b or 1, m, h*d]); the
    projections are bias-free, so that is also the projection of the mean token. Several subjects
    replace their words together (as several PhotoMaker words do); their query masks combine as
    their maximum.
    """
    active = [s for s in subjects if bool(s.token_mask.any())]
    if not active:
        return base
    rows = _subject_rows(active)
    keys, values = k[rows], v[rows]  # [r, n_k, h*d]
    gate = torch.zeros(rows.shape[0], q.shape[1], device=q.device)  # m(q) per row [r, n_q]
    for s in active:
        positions = s.token_mask[rows][..., None]  # [r, n_k, 1]
        key = _per_row(s.nested_keys, rows).mean(1, keepdim=True)  # [r, 1, h*d]
        value = _per_row(s.nested_values, rows).mean(1, keepdim=True) * s.strength
        keys = torch.where(positions, key.to(k.dtype), keys)
        values = torch.where(positions, value.to(v.dtype), values)
        gate = torch.maximum(gate, _gate(s, rows, q.shape[1]))
    replaced = plain_attention(q[rows], keys, values, heads).float()
    out = torch.lerp(base[rows].float(), replaced, gate[..., None])
    return base.index_copy(0, rows, out.to(base.dtype))


def decoupled_attention(base, q, k, v, heads: int, subjects: list[SubjectAttention]) -> torch.Tensor:
    """The decoupled rule (module docstring): base plus each subject's gated image attention."""
    active = [s for s in subjects if bool(s.token_mask.any())]
    if not active:
        return base
    rows = _subject_rows(active)
    queries, out = q[rows], base[rows].float()
    for s in active:
        image_keys, image_values = (_per_row(t, rows).to(q.dtype) for t in (s.nested_keys, s.nested_values))
        image = plain_attention(queries, image_keys, image_values, heads).float()  # [r, n_q, h*d]
        out = torch.addcmul(out, image, (s.strength * _gate(s, rows, q.shape[1]))[..., None])
    return base.index_copy(0, rows, out.to(base.dtype))


def _subject_rows(active: list[SubjectAttention]) -> torch.Tensor:
    """Indices of the rows holding some subject's word [r]."""
    return torch.stack([s.token_mask.any(-1) for s in active]).any(0).nonzero().squeeze(1)


def _per_row(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows of a tensor given per row, or once for all rows (leading dim 1)."""
    return t.expand(rows.shape[0], *t.shape[1:]) if t.shape[0] == 1 else t[rows]


def _gate(s: SubjectAttention, rows: torch.Tensor, n_queries: int) -> torch.Tensor:
    """[r, n_q]: the subject's query mask on the rows holding its word, 0 on the other rows."""
    holds = s.token_mask[rows].any(-1).float()[:, None]  # [r, 1]
    if s.query_mask is None:
        return holds.expand(-1, n_queries)
    return holds * _per_row(s.query_mask, rows).float()


class SingleTokenMethod:
    """Training method: the resampler learns; the per-layer projections stay the host's to_k/to_v.

    They must start as the host's (a new encoder: the trainer copies them; not ``--init`` weights).
    """

    name = "single_token"
    rule = staticmethod(single_token_attention)

    def prepare(self, encoder) -> None:
        encoder.nested_layers.requires_grad_(False)

    def trainable(self, encoder) -> list:
        return list(encoder.resampler.parameters())

    def nested(self, encoder, features) -> dict:
        """Reference features [B, T, F] -> {layer id: (keys, values) [B, 1, width]} of the pooled token."""
        return encoder.nested_keys_values(encoder.encode(features).mean(1, keepdim=True))

    def subject(self, encoder, features, word: str, base_family: str) -> NestedSubject:
        """One subject from its reference features [R, T, F]: one token, the mean over all R*N."""
        every_token = encode_subject(encoder, features, word, base_family)  # checks the features and the word
        with torch.no_grad():
            pooled = every_token.tokens.mean(0, keepdim=True)  # [1, C]
            nested = encoder.nested_keys_values(pooled)
        return NestedSubject(every_token.word, pooled, nested, base_family, every_token.context_dim)


class DecoupledMethod(NestedMethod):
    """Training method: as nested attention (every encoder parameter learns, N tokens per subject),
    but the tokens reach the UNet by a second attention."""

    name = "decoupled"
    rule = staticmethod(decoupled_attention)


SINGLE_TOKEN = SingleTokenMethod()
DECOUPLED = DecoupledMethod()
BASELINES = {method.name: method for method in (SINGLE_TOKEN, DECOUPLED)}


def apply_method(adapter, model, method, subject: NestedSubject, strength: float = 1.0, region=None):
    """A clone of the ComfyUI ``model`` with ``subject`` applied by ``method`` at every step.

    ``adapter`` is the pack's ``nodes.host_adapter`` (passed in: this module never imports
    ComfyUI); ``region`` [1, H, W] in [0, 1] limits the subject to part of the image.
    """
    return adapter.apply_subject(model, subject, strength, 0.0, 1.0, region, rule=method.rule)
