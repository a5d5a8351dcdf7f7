"""Encoded subjects: subject tokens and every layer's nested keys/values, computed once.

A ``NestedSubject`` is immutable and is shared, not copied, by ``copy.deepcopy`` (ComfyUI deep-copies
model options on every clone). It records the method that made it (``methods.py``): nested attention,
or a toy-world baseline. Files are safetensors with keys ``tokens`` [M, context_dim],
``nested.<layer id>.keys`` and ``nested.<layer id>.values`` [M, width], and string metadata
``format="nested_attention_subject"``, ``format_version`` (``SUBJECT_FORMAT_VERSION``, its own number,
independent of the weights format's), ``method``, ``word``, ``base_family``, ``context_dim``, ``layers``
(JSON ``[[id, width], ...]``) and ``source``.

Earlier versions are read through ``SUBJECT_UPGRADES``. Version 1 recorded no method: the Save Subject
node wrote nested attention subjects; the toy world's oracles (its only other writer) say in their
``source`` which encoder file they started from (``oracle (<method file key>, ...``), so a version-1
oracle of a baseline is read as that baseline.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Optional, Union

import torch
from einops import rearrange
from torch import Tensor

from .encoder import Progress, SubjectEncoder
from .errors import NestedAttentionError, ReferenceImageError, WeightsFormatError
from .files import (PathLike, check_finite, check_tensor_layout, layers_from_json, layers_to_json, metadata_int,
                    read_safetensors, require_metadata, upgrade_to, write_safetensors)
from .layers import LayerSpec, parse_layer_id
from .methods import METHODS, NESTED, check_method, method_named, recorded_method
from .prompt import normalize_word

SUBJECT_FORMAT = "nested_attention_subject"
SUBJECT_FORMAT_VERSION = "2"  # 2: records the method
SUBJECT_FIX = "give a .safetensors file written by save_subject (the Save Subject node), or encode the subject again"


@dataclass(frozen=True, eq=False, repr=False)
class NestedSubject:
    word: str  # the prompt word, as prompt.normalize_word gives it (lower case, single spaces)
    tokens: Tensor  # [M, context_dim], subject tokens of all reference images
    nested: dict[str, tuple[Tensor, Tensor]]  # layer id -> (nested keys, nested values) [M, width]
    base_family: str
    context_dim: int
    source: str = ""  # where it was made, for messages: the weights file, or the subject file
    method: str = NESTED.name  # how its tokens reach the model (methods.py)

    def __post_init__(self) -> None:
        method_named(self.method)
        object.__setattr__(self, "word", normalize_word(self.word))
        object.__setattr__(self, "nested", dict(self.nested))
        t = self.tokens
        if not isinstance(t, Tensor) or t.ndim != 2 or t.shape[0] == 0 or t.shape[1] != self.context_dim:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise NestedAttentionError(f"subject tokens must be [M>0, {self.context_dim}], got {shape}")
        if not self.nested:
            raise NestedAttentionError("a subject needs nested keys/values for at least one layer")
        for layer_id, kv in self.nested.items():
            if not (isinstance(kv, tuple) and len(kv) == 2 and all(isinstance(x, Tensor) for x in kv)):
                raise NestedAttentionError(f"nested[{layer_id!r}] must be a (keys, values) tuple of tensors")
            k, v = kv
            if k.ndim != 2 or k.shape != v.shape or k.shape[0] != t.shape[0]:
                raise NestedAttentionError(
                    f"nested keys/values of layer {layer_id} have shapes {list(k.shape)}/{list(v.shape)}, "
                    f"expected [{t.shape[0]}, width] each")
        if not isinstance(self.base_family, str) or not self.base_family:
            raise NestedAttentionError(f"base_family must be a non-empty label, got {self.base_family!r}")

    def __deepcopy__(self, memo) -> "NestedSubject":
        return self  # immutable

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[0]

    def layer_widths(self) -> dict[str, int]:
        return {layer_id: k.shape[-1] for layer_id, (k, _) in self.nested.items()}

    def layers(self) -> list[LayerSpec]:
        return [parse_layer_id(layer_id, width) for layer_id, width in self.layer_widths().items()]

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "NestedSubject":
        """A copy with every tensor moved/cast (self when nothing changes)."""
        def move(x: Tensor) -> Tensor:
            return x.to(device=device, dtype=dtype)
        tokens = move(self.tokens)
        if tokens is self.tokens:
            return self
        nested = {i: (move(k), move(v)) for i, (k, v) in self.nested.items()}
        return replace(self, tokens=tokens, nested=nested)

    def describe(self) -> str:
        return f"subject {self.word!r}" + (f" (from {self.source})" if self.source else "")

    def __repr__(self) -> str:
        return (f"NestedSubject(word={self.word!r}, tokens={self.num_tokens}, layers={len(self.nested)}, "
                f"base_family={self.base_family!r}, context_dim={self.context_dim}, method={self.method!r})")


def encode_subject(encoder: SubjectEncoder, image_features: Tensor, word: str, base_family: str,
                   progress: Optional[Progress] = None, source: str = "", method: str = NESTED.name) -> NestedSubject:
    """Reference-image features [B, T, F] -> subject with M = B*N tokens and all nested keys/values,
    computed on the encoder's device; ``method``: the one the encoder was trained for."""
    if not isinstance(image_features, Tensor) or image_features.ndim != 3 or image_features.shape[0] == 0:
        shape = tuple(image_features.shape) if isinstance(image_features, Tensor) else type(image_features).__name__
        raise ReferenceImageError(f"reference image features must be [images>0, tokens, features], got {shape}; "
                                  "encode at least one reference image with the CLIP vision model")
    param = next(encoder.parameters())
    with torch.no_grad():
        tokens = encoder.encode(image_features.to(device=param.device, dtype=param.dtype))  # [B, N, C]
        tokens = rearrange(tokens, "b n c -> (b n) c")  # [M, C]
        nested = encoder.nested_keys_values(tokens, progress)
    return NestedSubject(word, tokens, nested, base_family, encoder.config.output_dim, source, method)


def save_subject(path: PathLike, subject: NestedSubject) -> None:
    tensors = {"tokens": _saved(subject.tokens)}
    for layer_id, (k, v) in subject.nested.items():
        tensors[f"nested.{layer_id}.keys"] = _saved(k)
        tensors[f"nested.{layer_id}.values"] = _saved(v)
    metadata = {"format": SUBJECT_FORMAT, "format_version": SUBJECT_FORMAT_VERSION, "method": subject.method,
                "word": subject.word, "base_family": subject.base_family, "context_dim": str(subject.context_dim),
                "source": subject.source, "layers": layers_to_json(subject.layers())}
    write_safetensors(path, tensors, metadata)


def _saved(t: Tensor) -> Tensor:
    return t.detach().to("cpu").contiguous()


def _subject_v1(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]):
    """Version 1 -> 2: the method, which version 1 did not record (module docstring)."""
    match = re.match(r"oracle \((\w+), ", metadata.get("source", ""))
    by_key = {m.file_key: m for m in METHODS.values()}
    method = by_key.get(match[1], NESTED) if match else NESTED
    metadata.update(format_version="2", method=method.name)
    return tensors, metadata


SUBJECT_UPGRADES = {"1": _subject_v1}  # every earlier version -> the next one


def load_subject(path: PathLike, device: Union[str, torch.device] = "cpu",
                 accept: Optional[Iterable[str]] = None) -> NestedSubject:
    """Read a subject file of any version; strict: any inconsistency is a WeightsFormatError naming the
    file. ``accept``: the method names the caller takes (None: any known method); a subject of another
    method is a MethodError naming the file, its method and the accepted ones."""
    path = Path(path)
    tensors, metadata = read_safetensors(path, "subject", SUBJECT_FIX)
    fmt = metadata.get("format")
    if fmt == "nested_attention":
        raise WeightsFormatError(f"{path} is a Nested Attention weights file, not an encoded subject; "
                                 "load it with 'Nested Attention Loader (IP-Adapter)' (load_weights) and encode "
                                 "a subject from it with 'Nested Attention Subject (reference)'")
    if fmt != SUBJECT_FORMAT:
        raise WeightsFormatError(f"{path} is not a subject file (format metadata {fmt!r}, expected "
                                 f"{SUBJECT_FORMAT!r}); {SUBJECT_FIX}")
    tensors, metadata = upgrade_to(path, "subject", tensors, metadata, SUBJECT_FORMAT_VERSION, SUBJECT_UPGRADES)
    require_metadata(path, metadata, ("word", "base_family", "context_dim", "layers"))
    method = recorded_method(path, metadata, "encode the subject again").name
    check_method(f"subject file {path}", method, tuple(METHODS) if accept is None else accept,
                 "subjects of the toy world's baselines are for its own evaluation; encode the subject with "
                 "nested attention weights (Nested Attention Subject) and save it again" if method != NESTED.name
                 else "give a subject of the accepted method")
    context_dim = metadata_int(path, metadata, "context_dim")
    layers = layers_from_json(path, metadata["layers"])
    tokens = tensors.get("tokens")
    m = tokens.shape[0] if tokens is not None and tokens.ndim == 2 else -1  # -1: reported as a bad shape
    expected = {"tokens": (m, context_dim)}
    for layer in layers:
        expected[f"nested.{layer.id}.keys"] = (m, layer.width)
        expected[f"nested.{layer.id}.values"] = (m, layer.width)
    check_tensor_layout(path, expected, tensors, "the file is incomplete or was edited; " + SUBJECT_FIX)
    check_finite(path, tensors, "encode the subject again from its reference images")
    nested = {layer.id: (tensors[f"nested.{layer.id}.keys"].to(device),
                         tensors[f"nested.{layer.id}.values"].to(device)) for layer in layers}
    try:
        made_from = f", encoded from {metadata['source']}" if metadata.get("source") else ""
        return NestedSubject(metadata["word"], tokens.to(device), nested, metadata["base_family"], context_dim,
                             f"subject file {path.name}{made_from}", method)
    except NestedAttentionError as err:
        raise WeightsFormatError(f"{path}: {err}; {SUBJECT_FIX}") from None
