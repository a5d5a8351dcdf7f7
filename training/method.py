"""What a run trains: how the subject encoder's outputs reach the UNet, and which parameters learn.

A training method is any object with these attributes (``NESTED``, the default, is nested
attention; the benchmark's baselines in ``toyworld/baselines.py`` are methods of the same shape):

- ``name``: recorded in the run's identity, so a state is only resumed with the method that made it;
- ``rule``: the attention rule the training binding carries (see ``host_adapter.apply_binding``);
  None is nested attention;
- ``prepare(encoder)``: called once on the new (or warm-started) encoder, e.g. to freeze a part;
- ``trainable(encoder)``: the parameters the optimizer steps, clips and averages over processes;
- ``nested(encoder, features)``: reference features [B, T, F] -> {layer id: (keys, values)
  [B, m, width]}, what the binding hands each layer for the B rows of a batch;
- ``subject(encoder, features, word, base_family)``: reference features of ONE subject [R, T, F]
  -> a frozen ``NestedSubject``, applied at inference with ``host_adapter.apply_subject(...,
  rule=method.rule)``.

Pure torch and the core: importing this module needs no ComfyUI.
"""
from __future__ import annotations

from nested_attention_core.subject import encode_subject


class NestedMethod:
    """Nested attention (the paper): N subject tokens, every encoder parameter trained."""

    name = "nested"
    rule = None

    def prepare(self, encoder) -> None:
        pass

    def trainable(self, encoder) -> list:
        return list(encoder.parameters())

    def nested(self, encoder, features) -> dict:
        return encoder.nested_keys_values(encoder.encode(features))

    def subject(self, encoder, features, word: str, base_family: str):
        return encode_subject(encoder, features, word, base_family)


NESTED = NestedMethod()
