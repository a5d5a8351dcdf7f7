"""The Nested Attention weight file, and IP-Adapter Plus files as a warm start.

Our format is safetensors with keys ``image_proj.<Resampler key>``, ``nested.<layer id>.to_k.weight``
and ``nested.<layer id>.to_v.weight`` and string metadata ``format="nested_attention"``,
``format_version`` (``WEIGHTS_FORMAT_VERSION``), ``method`` (``methods.py``: ``nested``, or a toy-world
baseline ``single_token`` / ``decoupled``), ``base_family``, ``context_dim``, ``layers`` (JSON
``[[id, width], ...]``), ``num_tokens``, ``image_feature_dim`` and ``encoder_config`` (``EncoderConfig`` JSON).

Earlier versions are read through ``WEIGHTS_UPGRADES`` (``files.upgrade_to``). Version 1 recorded no
method: every writer of version 1 wrote nested attention, except the toy world's encoder stage, which
wrote its baselines with the same metadata, named ``toyworld_single_token*.safetensors`` and
``toyworld_decoupled*.safetensors``; a version-1 file of such a name is read as that baseline.

``load_weights`` returns a ``NestedAttentionWeights(encoder, base_family, source_format, path, method)``:
the ``SubjectEncoder`` (eval mode, no gradients, tensors in the file's dtype; float32 if the file mixes
dtypes), the base family label, ``"nested_attention"`` or ``"ip_adapter_plus"`` and the method. Given
``accept`` (method names), a file of any other method is a ``MethodError`` naming the file, its method
and the accepted ones. It also reads IP-Adapter Plus files (``.safetensors`` with flat ``image_proj.*``
/ ``ip_adapter.<n>.to_k_ip.weight`` keys, or ``.bin``/``.pt``/``.pth`` read ONLY with
``torch.load(weights_only=True)``) as nested attention weights: IP-Adapter's ``to_k_ip``/``to_v_ip``
become the nested projections; processor ``ip_adapter.{2k+1}`` is the k-th layer of ``ip_adapter_order``.
The family of an IP-Adapter file comes from its number of cross-attention entries (16 SD1.5, 70 SDXL);
its token width must then be that family's context width, unless it is neither 768 nor 2048 (a
test-sized file), which is accepted with a warning.

``base_family`` is a label here; whether weights fit a given UNet is checked where they are applied.
Every failure to read a file is a ``WeightsFormatError`` naming the file and the fix.
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Optional, Union

import torch
from torch import Tensor

from .encoder import EncoderConfig, SubjectEncoder
from .errors import NestedAttentionError, WeightsFormatError
from .families import display_name, families, ip_adapter_family
from .files import (PathLike, check_finite, check_tensor_layout, layers_from_json, layers_to_json, metadata_int,
                    read_safetensors, require_file, require_metadata, upgrade_to, write_safetensors)
from .layers import LayerSpec, ip_adapter_order
from .methods import DECOUPLED, METHODS, NESTED, SINGLE_TOKEN, check_method, method_named, recorded_method

log = logging.getLogger(__name__)

FORMAT = "nested_attention"
WEIGHTS_FORMAT_VERSION = "2"  # 2: records the method
TORCH_SUFFIXES = (".bin", ".pt", ".pth")
IP_ADAPTER_DIM_HEAD = 64
WEIGHTS_FIX = ("give a .safetensors file written by the pack's trainer (nested-attention-train) or save_weights, "
               "or an IP-Adapter Plus .safetensors/.bin file")
BASELINE_FIX = ("the toy world's baselines are for its own evaluation; give weights trained with nested attention "
                "(the trainer's default)")
_METADATA_KEYS = ("base_family", "context_dim", "layers", "num_tokens", "image_feature_dim",
                  "encoder_config")


@dataclass(frozen=True, eq=False, repr=False)
class NestedAttentionWeights:
    """A loaded subject encoder with the base family it was made for."""

    encoder: SubjectEncoder
    base_family: str  # "sd15" | "sdxl" | any label of a custom layout
    source_format: str  # "nested_attention" | "ip_adapter_plus"
    path: str = ""  # the file it was read from
    method: str = NESTED.name  # how its tokens reach the model (methods.py)

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    @property
    def layers(self) -> list[LayerSpec]:
        return self.encoder.layers

    @property
    def context_dim(self) -> int:
        return self.encoder.config.output_dim

    def describe(self) -> str:
        return (f"Nested Attention weights: {display_name(self.base_family)}, {len(self.layers)} layers, "
                f"{self.config.num_tokens} subject tokens per image, context {self.context_dim}, "
                f"image features {self.config.image_feature_dim}, from {self.source_format}"
                + ("" if self.method == NESTED.name else f", {method_named(self.method).describe()}"))

    __repr__ = describe


# ---- saving -------------------------------------------------------------------------------------

def save_weights(path: PathLike, encoder: SubjectEncoder, base_family: str, method: str = NESTED.name) -> None:
    """Write ``encoder`` (trained by ``method``) to ``path`` in our safetensors format (atomically:
    temp file + rename)."""
    if not isinstance(base_family, str) or not base_family.strip():
        raise NestedAttentionError(f"base_family must be a non-empty label such as 'sd15', got {base_family!r}")
    method_named(method)
    c = encoder.config
    metadata = {
        "format": FORMAT, "format_version": WEIGHTS_FORMAT_VERSION, "method": method, "base_family": base_family,
        "context_dim": str(c.output_dim), "layers": layers_to_json(encoder.layers),
        "num_tokens": str(c.num_tokens), "image_feature_dim": str(c.image_feature_dim),
        "encoder_config": c.to_json(),
    }
    tensors = {_file_key(k): t.detach().contiguous() for k, t in encoder.state_dict().items()}
    write_safetensors(path, tensors, metadata)


def _file_key(module_key: str) -> str:
    # SubjectEncoder.state_dict key -> file key
    if module_key.startswith("resampler."):
        return "image_proj." + module_key[len("resampler."):]
    return "nested." + module_key[len("nested_layers."):]


def _module_key(file_key: str) -> str:
    if file_key.startswith("image_proj."):
        return "resampler." + file_key[len("image_proj."):]
    return "nested_layers." + file_key[len("nested."):]


# ---- loading ------------------------------------------------------------------------------------

def load_weights(path: PathLike, device: Union[str, torch.device] = "cpu",
                 accept: Optional[Iterable[str]] = None) -> NestedAttentionWeights:
    """Read our format (any version) or an IP-Adapter Plus file; strict: any inconsistency is a
    WeightsFormatError. ``accept``: the method names the caller takes (None: any known method)."""
    path = Path(path)
    accept = tuple(METHODS) if accept is None else tuple(accept)
    require_file(path, "Nested Attention weights")
    if path.suffix.lower() in TORCH_SUFFIXES:
        _check_weights_method(path, NESTED.name, accept)
        return _from_ip_adapter(path, _read_torch_ip_adapter(path), device)
    tensors, metadata = read_safetensors(path, "Nested Attention weights", WEIGHTS_FIX)
    fmt = metadata.get("format")
    if fmt == FORMAT:
        tensors, metadata = upgrade_to(path, "Nested Attention weights", tensors, metadata, WEIGHTS_FORMAT_VERSION,
                                       WEIGHTS_UPGRADES)
        _check_weights_method(path, recorded_method(path, metadata, "save it again with save_weights").name, accept)
        return _from_nested_attention(path, tensors, metadata, device)
    if fmt is None and any(k.startswith("nested.") for k in tensors):
        raise WeightsFormatError(f"{path} has Nested Attention tensors but no format metadata (it was "
                                 "stripped, e.g. by a converter); save it again with save_weights")
    if fmt is None and any(k.startswith(("image_proj.", "ip_adapter.")) for k in tensors):
        _check_weights_method(path, NESTED.name, accept)
        return _from_ip_adapter(path, tensors, device)
    if fmt == "nested_attention_subject":
        raise WeightsFormatError(f"{path} is an encoded subject file, not weights; load it with "
                                 "load_subject (the Load Subject node) instead")
    raise WeightsFormatError(f"{path} is not a Nested Attention weights file (format metadata "
                             f"{fmt!r}, expected {FORMAT!r}) nor an IP-Adapter Plus file; {WEIGHTS_FIX}")


def _check_weights_method(path: Path, method: str, accept: tuple[str, ...]) -> None:
    check_method(f"weights file {path}", method, accept, BASELINE_FIX if method != NESTED.name
                 else "give weights trained with the accepted method")


def _weights_v1(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]):
    """Version 1 -> 2: the method, which version 1 did not record (module docstring)."""
    baseline = next((m for m in (SINGLE_TOKEN, DECOUPLED) if path.name.startswith(f"toyworld_{m.file_key}")), None)
    metadata.update(format_version="2", method=(baseline or NESTED).name)
    return tensors, metadata


WEIGHTS_UPGRADES = {"1": _weights_v1}  # every earlier version -> the next one


def _from_nested_attention(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str],
                           device) -> NestedAttentionWeights:
    require_metadata(path, metadata, _METADATA_KEYS)
    try:
        config = EncoderConfig.from_json(metadata["encoder_config"])
    except NestedAttentionError as err:
        raise WeightsFormatError(f"{path}: bad encoder_config metadata: {err}; re-save the weights "
                                 "with save_weights") from None
    layers = layers_from_json(path, metadata["layers"])
    for key, value in (("context_dim", config.output_dim), ("num_tokens", config.num_tokens),
                       ("image_feature_dim", config.image_feature_dim)):
        if metadata_int(path, metadata, key) != value:
            raise WeightsFormatError(f"{path}: metadata {key}={metadata[key]} disagrees with "
                                     f"encoder_config ({value}); the file was edited, re-save it with save_weights")
    base_family = metadata["base_family"]
    if not base_family:
        raise WeightsFormatError(f"{path}: empty base_family metadata; re-save it with save_weights")
    encoder = _skeleton(path, config, layers)
    expected = {_file_key(k): tuple(t.shape) for k, t in encoder.state_dict().items()}
    check_tensor_layout(path, expected, tensors, "the file is incomplete or was edited; re-save it "
                        "with save_weights or download it again")
    check_finite(path, tensors, "the weights were saved from a diverged training run: use an earlier save "
                 "(training keeps step-numbered files) or train again with a lower --lr")
    _load_into(encoder, {_module_key(k): t for k, t in tensors.items()}, device)
    return NestedAttentionWeights(encoder, base_family, FORMAT, str(path), metadata["method"])


def _skeleton(path: Path, config: EncoderConfig, layers: list[LayerSpec]) -> SubjectEncoder:
    """An encoder on the meta device: shapes without allocating or initialising memory."""
    try:
        with torch.device("meta"):
            return SubjectEncoder(config, layers)
    except NestedAttentionError as err:
        raise WeightsFormatError(f"{path}: {err}") from None


def _load_into(encoder: SubjectEncoder, state: dict[str, Tensor], device) -> None:
    if len({t.dtype for t in state.values()}) > 1:
        log.info("weights mix dtypes %s; loading them as float32", sorted({str(t.dtype) for t in state.values()}))
        state = {k: t.float() for k, t in state.items()}
    encoder.load_state_dict(state, strict=True, assign=True)
    encoder.to(device).eval().requires_grad_(False)


# ---- IP-Adapter Plus ----------------------------------------------------------------------------

def _read_torch_ip_adapter(path: Path) -> dict[str, Tensor]:
    """A ``{"image_proj": {...}, "ip_adapter": {...}}`` checkpoint, flattened to safetensors-style keys."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsFormatError(
            f"{path} holds Python objects beyond plain tensors and is not loaded (only "
            "torch.load(weights_only=True) is used, for safety); use the .safetensors version of "
            "this IP-Adapter Plus file") from None
    except Exception as err:  # torch raises RuntimeError, KeyError, EOFError... on bad files
        raise WeightsFormatError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: "
                                 f"{str(err)[:200]}); download it again or use the .safetensors version") from None
    if not (isinstance(ckpt, dict) and set(ckpt) == {"image_proj", "ip_adapter"}
            and all(isinstance(part, dict) for part in ckpt.values())):
        found = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise WeightsFormatError(f"{path} is not an IP-Adapter Plus checkpoint: expected a dict with "
                                 f"'image_proj' and 'ip_adapter', found {found}; {WEIGHTS_FIX}")
    flat = {f"{part}.{key}": t for part, sub in ckpt.items() for key, t in sub.items()}
    bad = sorted(k for k, t in flat.items() if not isinstance(t, Tensor))
    if bad:
        raise WeightsFormatError(f"{path}: entries {bad[:5]} are not tensors; {WEIGHTS_FIX}")
    return flat


def _from_ip_adapter(path: Path, tensors: dict[str, Tensor], device) -> NestedAttentionWeights:
    proj = {k[len("image_proj."):]: t for k, t in tensors.items() if k.startswith("image_proj.")}
    if "latents" not in proj:
        if "proj.weight" in proj:
            raise WeightsFormatError(f"{path} is a plain IP-Adapter (image_proj.proj), not IP-Adapter "
                                     "Plus; use an IP-Adapter *Plus* file, e.g. ip-adapter-plus_sd15.safetensors")
        raise WeightsFormatError(f"{path} has no image_proj.latents, so it is not an IP-Adapter Plus "
                                 f"file (FaceID and other variants are not supported); {WEIGHTS_FIX}")
    config = _infer_ip_adapter_config(path, proj)
    numbers = {k.split(".")[1] for k in tensors if k.startswith("ip_adapter.")}
    family = ip_adapter_file_family(path, len(numbers), config.output_dim)
    config = _family_head_split(config, family)
    ordered = ip_adapter_order(list(family.layers))
    encoder = _skeleton(path, config, list(family.layers))
    expected = {f"image_proj.{k}": tuple(t.shape) for k, t in encoder.resampler.state_dict().items()}
    state = {f"resampler.{k}": t for k, t in proj.items()}
    for k, layer in enumerate(ordered):
        for ours, theirs in (("to_k", "to_k_ip"), ("to_v", "to_v_ip")):
            key = f"ip_adapter.{2 * k + 1}.{theirs}.weight"
            expected[key] = (layer.width, config.output_dim)
            if key in tensors:
                state[f"nested_layers.{layer.id}.{ours}.weight"] = tensors[key]
    check_tensor_layout(path, expected, tensors, "it is not a complete IP-Adapter Plus file for "
                        f"{family.display_name}; download it again")
    check_finite(path, tensors, "the file is damaged: download it again")
    _load_into(encoder, state, device)
    return NestedAttentionWeights(encoder, family.name, "ip_adapter_plus", str(path))


def ip_adapter_file_family(path: PathLike, count: int, output_dim: int):
    """The family of an IP-Adapter Plus file from its number of attn2 entries, checked against its width."""
    family = ip_adapter_family(count)
    if family is None:
        known = ", ".join(f"{f.display_name} ({len(f.layers)})" for f in families() if f.ip_adapter)
        raise WeightsFormatError(
            f"{path} has {count} IP-Adapter cross-attention entries; only IP-Adapter Plus files of {known} "
            "are known; use an IP-Adapter Plus file for one of these")
    by_width = next((f for f in families() if f.ip_adapter and f.context_dim == output_dim), None)
    if by_width is not None and by_width != family:
        raise WeightsFormatError(
            f"{path} is inconsistent: its {count} cross-attention entries say {family.display_name} "
            f"but its token width {output_dim} says {by_width.display_name}; download it again")
    if by_width is None:
        log.warning("%s: token width %d is not %s's context width %d; taking %s from its %d layers",
                    path, output_dim, family.display_name, family.context_dim, family.name, count)
    return family


def _family_head_split(config: EncoderConfig, family) -> EncoderConfig:
    """An IP-Adapter Plus file does not record how its resampler's attention width is split into heads
    (IP-Adapter's own: 64 per head, ``IP_ADAPTER_DIM_HEAD``); a family whose encoder has the same
    attention width split otherwise (the toy world's 4 x 32) gets its own split. SD1.5 and SDXL split
    by 64 like IP-Adapter, so their files are read as before."""
    own = family.encoder
    if own.dim_head == config.dim_head or own.heads * own.dim_head != config.heads * config.dim_head:
        return config
    return replace(config, heads=own.heads, dim_head=own.dim_head)


def _infer_ip_adapter_config(path: Path, proj: dict[str, Tensor]) -> EncoderConfig:
    needed = ("latents", "proj_in.weight", "proj_out.weight", "layers.0.0.to_q.weight", "layers.0.1.1.weight")
    missing = [f"image_proj.{k}" for k in needed if k not in proj]
    if missing:
        raise WeightsFormatError(f"{path}: incomplete IP-Adapter Plus file, missing {missing}; download it again")
    latents = proj["latents"]
    if latents.ndim != 3 or latents.shape[0] != 1:
        raise WeightsFormatError(f"{path}: image_proj.latents has shape {tuple(latents.shape)}, expected "
                                 "[1, tokens, width]; download the IP-Adapter Plus file again")
    width = latents.shape[2]
    inner = proj["layers.0.0.to_q.weight"].shape[0]
    ff_inner = proj["layers.0.1.1.weight"].shape[0]
    if inner % IP_ADAPTER_DIM_HEAD or ff_inner % width:
        raise WeightsFormatError(f"{path}: resampler widths (attention {inner}, feed-forward {ff_inner}) "
                                 f"are not multiples of {IP_ADAPTER_DIM_HEAD} and {width}; not an IP-Adapter Plus file")
    try:
        return EncoderConfig(
            num_tokens=latents.shape[1], width=width,
            depth=len({k.split(".")[1] for k in proj if k.startswith("layers.")}),
            heads=inner // IP_ADAPTER_DIM_HEAD, dim_head=IP_ADAPTER_DIM_HEAD, ff_mult=ff_inner // width,
            image_feature_dim=proj["proj_in.weight"].shape[1], output_dim=proj["proj_out.weight"].shape[0])
    except NestedAttentionError as err:
        raise WeightsFormatError(f"{path}: {err}; not a usable IP-Adapter Plus file") from None


