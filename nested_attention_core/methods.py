"""Methods: how a subject encoder's tokens reach the model, one registry for files, trainer, nodes and toy world.

A method has a ``name`` (what weight and subject files record in their ``method`` metadata, and
what a training state records), the attention ``rule`` its subjects are applied with
(``rules.py``), a ``display_name`` for people (messages, the toy world's tables) and a
``file_key`` (the toy world's file and folder names). Nested attention is the paper's method and the
only one the nodes accept; single token and decoupled cross-attention are the toy world's baselines
(``baselines.py``), trained by the same trainer and written in the same weight format.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .errors import MethodError, NestedAttentionError, WeightsFormatError


@dataclass(frozen=True)
class Method:
    name: str  # recorded in files and training states, e.g. "nested"
    rule: str  # the attention rule of its subjects (rules.RULES)
    display_name: str  # for people, e.g. "nested attention"
    file_key: str  # the toy world's file and folder names, e.g. "nested_attention"

    def describe(self) -> str:
        return f"{self.display_name} (method {self.name!r})"


NESTED = Method("nested", "nested", "nested attention", "nested_attention")
SINGLE_TOKEN = Method("single_token", "single_token", "single token", "single_token")
DECOUPLED = Method("decoupled", "decoupled", "decoupled cross-attention", "decoupled")
METHODS: dict[str, Method] = {m.name: m for m in (NESTED, SINGLE_TOKEN, DECOUPLED)}


def method_named(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise NestedAttentionError(f"unknown method {name!r}; known methods: {sorted(METHODS)}") from None


def check_method(what: str, name: str, accepted: Iterable[str], fix: str) -> None:
    """A MethodError naming ``what`` (a file or object), its method and the accepted ones, unless
    ``name`` is one of ``accepted``."""
    accepted = tuple(accepted)
    if name in accepted:
        return
    theirs = METHODS[name].describe() if name in METHODS else f"the unknown method {name!r}"
    ours = " or ".join(METHODS[a].describe() if a in METHODS else repr(a) for a in accepted)
    raise MethodError(f"{what} holds {theirs}, but only {ours} is accepted here; {fix}")


def recorded_method(path, metadata: dict[str, str], again: str) -> Method:
    """The method a file's ``method`` metadata names; a WeightsFormatError naming the file if it names
    none this pack knows (``again``: how to write the file anew)."""
    name = metadata.get("method")
    if name not in METHODS:
        raise WeightsFormatError(f"{path}: metadata method={name!r} is not a method this node pack knows "
                                 f"({sorted(METHODS)}); it was written by a newer node pack (update this one) or "
                                 f"edited ({again})")
    return METHODS[name]
