"""The training binding: the live per-row encoder outputs of the current batch, as a host binding.

``host.apply_binding`` installs any object with ``word``, ``strength``, ``active(sigma)``,
``nested_kv(layer_id, device, dtype)`` and ``query_mask(...)`` into every attn2 layer, through the same
``NestedAttentionPatch`` that runs at inference. At inference the binding holds one frozen subject;
here it hands out the nested keys/values ``[B, m, width]`` that the subject encoder has just computed
for the B rows of the batch, with their autograd graph, so the loss reaches the encoder.

Which rows and positions the subject acts on is decided as at inference, by the prompt each row's
uuid carries (``StepPrompts``). Rows train different subjects with different words, but all rows'
nested values come from the same encoder call, so ONE binding serves them all: each row's prompt is
reduced to its own subject word's positions, renamed ``SUBJECT_WORD`` (``subject_only``), and the
binding's word is ``SUBJECT_WORD``. Another subject's word in a caption therefore stays plain text,
and each layer computes the nested attention once for the whole batch. A row whose subject is
dropped carries no prompt.
"""
from __future__ import annotations

import contextlib

from ..nested_attention_core.prompt import PromptWords
from ..nested_attention_core.rules import NESTED_RULE


class LiveNested:
    """The nested keys/values of the batch being trained on: {layer id: (keys, values) [B, m, width]}."""

    def __init__(self):
        self.current: dict | None = None

    def __deepcopy__(self, memo):
        return self  # shared by every clone of the patched model, like the encoder it reflects


SUBJECT_WORD = "nestedattentiontrainingsubject"  # the binding's word: one piece for the tokenizer; no caption holds it


class TrainingBinding:
    strength = 1.0
    word = SUBJECT_WORD

    def __init__(self, live: LiveNested, rule: str = NESTED_RULE):
        self.live = live
        self.rule = rule  # the training method's attention rule, by name

    def __deepcopy__(self, memo):
        return self

    def active(self, sigma: float) -> bool:
        return True  # training covers every timestep

    def recompute_state(self):
        """For gradient checkpointing (host ``checkpointing.py``): a factory of contexts in which the UNet's
        blocks, recomputed in the backward pass, get the nested keys/values they got in the forward pass (the
        step has ended by then and cleared them)."""
        live, current = self.live, self.live.current

        @contextlib.contextmanager
        def state():
            before, live.current = live.current, current
            try:
                yield
            finally:
                live.current = before
        return state

    def nested_kv(self, layer_id: str, device, dtype):
        if self.live.current is None:
            raise RuntimeError("the training binding was called outside a training step: no encoder outputs are set")
        keys, values = self.live.current[layer_id]
        return keys.to(device=device, dtype=dtype), values.to(device=device, dtype=dtype)

    def query_mask(self, grid, areas, latent_batch: int, latent_size, device):
        return None  # training images have no region


def subject_only(words: PromptWords, word: str) -> PromptWords:
    """The prompt reduced to the occurrences of ``word``, each renamed ``SUBJECT_WORD``: the same
    context positions and length, no other words."""
    return PromptWords(tuple((SUBJECT_WORD, positions) for positions in words.occurrences(word)), words.length)
