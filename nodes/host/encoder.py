"""The nodes' files and the subject encoder on the host's devices, the way ComfyUI runs its own encoders.

Like CLIP vision (``comfy/clip_vision.py``), the Loader reads the weights onto the text encoders'
offload device (the CPU unless ``--gpu-only``) and wraps the encoder in a ``ModelPatcher`` whose load
device is ``text_encoder_device()`` (the GPU when there is one and room for it). It is the plain
``ModelPatcher``, in 0.3.75 and in the newest host alike: the newest host's ``CoreModelPatcher`` may be
its dynamic-VRAM patcher, made for ``comfy.ops`` layers, and the encoder is plain torch. The Subject node asks
the host's model management to load it (``load_models_gpu``: it makes room by offloading other
models, and offloads this one when a later model needs the room) and encodes on that device. The
subject's tokens and nested keys/values then go to the host's intermediate device, as the host's own
encoders' outputs do; at sampling, each layer's keys/values move to the attention's device once
(``binding.SubjectBinding``). Saved subjects load onto the intermediate device too.

The nodes take nested attention only (``NODE_METHODS``): weights or subjects of the toy world's
baselines are refused by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from ...nested_attention_core.methods import NESTED, check_method
from ...nested_attention_core.subject import NestedSubject, encode_subject, load_subject
from ...nested_attention_core.weights import BASELINE_FIX, NestedAttentionWeights, load_weights

NODE_METHODS = (NESTED.name,)  # what the nodes take


@dataclass(frozen=True, eq=False, repr=False)
class HostWeights(NestedAttentionWeights):
    """Loaded weights with the ModelPatcher the host's model management loads and offloads them by."""

    patcher: object = field(default=None)


def load_node_weights(path) -> HostWeights:
    """Nested attention weights on the offload device, with their ModelPatcher."""
    import comfy.model_management as mm
    from comfy.model_patcher import ModelPatcher

    offload_device = mm.text_encoder_offload_device()
    weights = load_weights(path, device=offload_device, accept=NODE_METHODS)
    patcher = ModelPatcher(weights.encoder, load_device=mm.text_encoder_device(), offload_device=offload_device)
    return HostWeights(**{f.name: getattr(weights, f.name) for f in fields(weights)}, patcher=patcher)


def encode_node_subject(weights: NestedAttentionWeights, features, word: str, progress=None,
                        source: str = "") -> NestedSubject:
    """The subject of reference features [B, T, F], encoded on the encoder's load device (weights
    loaded in code, without a patcher, where they lie) and returned on the intermediate device."""
    import comfy.model_management as mm
    import torch

    check_node_weights(weights)
    patcher = getattr(weights, "patcher", None)
    if patcher is not None:  # plain torch modules, not comfy.ops: loaded whole, never partially (lowvram)
        mm.load_models_gpu([patcher], force_full_load=True)
    with torch.inference_mode():
        subject = encode_subject(weights.encoder, features, word, weights.base_family, progress, source, weights.method)
    return subject.to(mm.intermediate_device())


def load_node_subject(path) -> NestedSubject:
    """A saved nested attention subject, on the intermediate device."""
    import comfy.model_management as mm

    return load_subject(path, device=mm.intermediate_device(), accept=NODE_METHODS)


def check_node_weights(weights: NestedAttentionWeights) -> None:
    """A MethodError naming the weights file unless it holds nested attention weights."""
    check_method(f"weights file {weights.path}" if weights.path else "the weights", weights.method, NODE_METHODS,
                 BASELINE_FIX)


def check_node_subject(subject: NestedSubject) -> None:
    """A MethodError naming the subject unless it is a nested attention subject."""
    check_method(subject.describe(), subject.method, NODE_METHODS,
                 "subjects of the toy world's baselines are for its own evaluation; encode the subject with "
                 "nested attention weights (Nested Attention Subject)")
