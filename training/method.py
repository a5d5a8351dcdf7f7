"""What a run trains: how the subject encoder's outputs reach the UNet, and which parameters learn.

A training method is one entry of the core's method registry (``nested_attention_core.methods``:
``method``, with its ``name`` and attention ``rule``) with what training does for it:

- ``name``: recorded in the run's identity, so a state is only resumed with the method that made it,
  and in the weights it writes;
- ``rule``: the name of the attention rule the training binding carries (``nested_attention_core.rules``);
- ``prepare(encoder)``: called once on the new (or warm-started) encoder, e.g. to freeze a part;
- ``trainable(encoder)``: the parameters the optimizer steps, clips and averages over processes;
- ``nested(encoder, features)``: reference features [B, T, F] -> {layer id: (keys, values)
  [B, m, width]}, what the binding hands each layer for the B rows of a batch;
- ``subject(encoder, features, word, base_family)``: reference features of ONE subject [R, T, F]
  -> a frozen ``NestedSubject``, applied at inference with ``host.apply_subject(..., rule=method.rule)``.

``METHODS`` holds one per registry entry, by name: nested attention (the paper; the default) and the
toy world's two baselines, single token and decoupled cross-attention (``nested_attention_core/baselines.py``).
Pure torch and the core: importing this module needs no ComfyUI.
"""
from __future__ import annotations

import torch

from ..nested_attention_core import methods
from ..nested_attention_core.subject import NestedSubject, encode_subject
from .errors import TrainingConfigError


class NestedMethod:
    """Nested attention (the paper): N subject tokens, every encoder parameter trained."""

    method = methods.NESTED

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def rule(self) -> str:
        return self.method.rule

    def prepare(self, encoder) -> None:
        pass

    def trainable(self, encoder) -> list:
        return list(encoder.parameters())

    def nested(self, encoder, features) -> dict:
        return encoder.nested_keys_values(encoder.encode(features))

    def subject(self, encoder, features, word: str, base_family: str) -> NestedSubject:
        return encode_subject(encoder, features, word, base_family, method=self.name)


class DecoupledMethod(NestedMethod):
    """As nested attention (every encoder parameter learns, N tokens per subject), but the tokens
    reach the UNet by a second attention (IP-Adapter style)."""

    method = methods.DECOUPLED


class SingleTokenMethod(NestedMethod):
    """The resampler learns; the per-layer projections stay the host's to_k/to_v (a new encoder:
    the trainer copies them; not ``--init`` weights). One pooled token per subject."""

    method = methods.SINGLE_TOKEN

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
        return NestedSubject(every_token.word, pooled, nested, base_family, every_token.context_dim, method=self.name)


NESTED_TRAINING = NestedMethod()
METHODS = {method.name: method for method in (NESTED_TRAINING, SingleTokenMethod(), DecoupledMethod())}


def method_named(name: str):
    try:
        return METHODS[name]
    except KeyError:
        raise TrainingConfigError(f"unknown training method {name!r}; choose one of {sorted(METHODS)}") from None
