"""The decoupled baseline's weights as an IP-Adapter Plus file, read back the way the pack's Loader reads one.

Decoupled cross-attention is IP-Adapter's mechanism: its per-layer key/value projections are
IP-Adapter's ``to_k_ip``/``to_v_ip`` and its encoder is IP-Adapter Plus's resampler. Written in
IP-Adapter Plus's layout (flat ``image_proj.*`` and ``ip_adapter.{2k+1}.to_k_ip.weight`` keys, processor
order ``layers.ip_adapter_order``, no metadata), the file is what a user would put in
``models/ipadapter/`` and pick as ``ipadapter: <file>`` in the Nested Attention Loader, which reads it
with ``weights.load_weights`` (the one function that turns IP-Adapter's projections into nested
keys/values; ``nodes/host/encoder.load_node_weights``). The evaluation's row "decoupled weights
through the nested rule (IP-Adapter file, no training)" applies what that function returns by the
nested rule: IP-Adapter weights used as Nested Attention weights without training. (An IP-Adapter
file does not record its resampler's head split; the loader takes the family's, 4 x 32 for the toy.)
"""
from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from ..nested_attention_core.encoder import SubjectEncoder
from ..nested_attention_core.layers import ip_adapter_order
from ..nested_attention_core.weights import NestedAttentionWeights


def ip_adapter_tensors(encoder: SubjectEncoder) -> dict:
    """The encoder's tensors under IP-Adapter Plus's keys (the inverse of ``load_weights``'s import)."""
    state = encoder.state_dict()
    tensors = {"image_proj." + k[len("resampler."):]: t for k, t in state.items() if k.startswith("resampler.")}
    for n, layer in enumerate(ip_adapter_order(list(encoder.layers))):
        for ours, theirs in (("to_k", "to_k_ip"), ("to_v", "to_v_ip")):
            tensors[f"ip_adapter.{2 * n + 1}.{theirs}.weight"] = state[f"nested_layers.{layer.id}.{ours}.weight"]
    return {k: t.detach().contiguous() for k, t in tensors.items()}


def write_ip_adapter_file(path, encoder: SubjectEncoder) -> Path:
    """``encoder`` as an IP-Adapter Plus .safetensors file at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(ip_adapter_tensors(encoder), str(path))
    return path


def through_ip_adapter_file(encoder: SubjectEncoder, folder) -> NestedAttentionWeights:
    """``encoder`` written as an IP-Adapter Plus file in ``folder`` and loaded as the Loader loads an
    ``ipadapter:`` choice: nested attention weights (method ``nested``, source ``ip_adapter_plus``).
    The toy family must be registered (``comfy_runtime.load_host``)."""
    from ..nodes.host import load_node_weights

    path = write_ip_adapter_file(Path(folder) / "toyworld_decoupled_ip_adapter.safetensors", encoder)
    return load_node_weights(path)
