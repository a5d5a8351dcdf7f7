"""Cross-attention (attn2) layers of a UNet, named the same way everywhere.

A layer id is ``"<block>_<block_id>_<depth>"``, e.g. ``"input_4_1"``: it maps 1:1 onto the host's
attn2 patch key ``(block, block_id, depth)`` where ``depth`` is the index of the transformer block
inside its SpatialTransformer. Each nested layer projects the subject tokens into that layer's
inner width (heads * dim_head).
"""
from __future__ import annotations

from dataclasses import dataclass

BLOCK_NAMES = ("input", "middle", "output")


@dataclass(frozen=True, order=True)
class LayerSpec:
    block: str  # "input" | "middle" | "output"
    block_id: int
    depth: int
    width: int  # inner width of the attn2 layer (heads * dim_head)

    @property
    def id(self) -> str:
        return f"{self.block}_{self.block_id}_{self.depth}"

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.block, self.block_id, self.depth)


def parse_layer_id(layer_id: str, width: int) -> LayerSpec:
    block, block_id, depth = layer_id.split("_")
    if block not in BLOCK_NAMES:
        raise ValueError(f"layer id {layer_id!r}: block must be one of {BLOCK_NAMES}")
    return LayerSpec(block, int(block_id), int(depth), int(width))


def _levels(blocks: dict[int, tuple[int, int]], block: str) -> list[LayerSpec]:
    return [LayerSpec(block, i, d, w) for i, (depth, w) in sorted(blocks.items()) for d in range(depth)]


def sd15_layers() -> list[LayerSpec]:
    """The 16 attn2 layers of SD1.5 (depth 1; widths 320/640/1280)."""
    inputs = {1: (1, 320), 2: (1, 320), 4: (1, 640), 5: (1, 640), 7: (1, 1280), 8: (1, 1280)}
    outputs = {3: (1, 1280), 4: (1, 1280), 5: (1, 1280), 6: (1, 640), 7: (1, 640), 8: (1, 640),
               9: (1, 320), 10: (1, 320), 11: (1, 320)}
    return _levels(inputs, "input") + _levels({0: (1, 1280)}, "middle") + _levels(outputs, "output")


def sdxl_layers() -> list[LayerSpec]:
    """The 70 attn2 layers of SDXL (depth 2 at width 640, depth 10 at width 1280)."""
    inputs = {4: (2, 640), 5: (2, 640), 7: (10, 1280), 8: (10, 1280)}
    outputs = {0: (10, 1280), 1: (10, 1280), 2: (10, 1280), 3: (2, 640), 4: (2, 640), 5: (2, 640)}
    return _levels(inputs, "input") + _levels({0: (10, 1280)}, "middle") + _levels(outputs, "output")


FAMILY_LAYERS = {"sd15": sd15_layers, "sdxl": sdxl_layers}
FAMILY_CONTEXT_DIM = {"sd15": 768, "sdxl": 2048}
FAMILY_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL"}


def family_for_context_dim(context_dim: int) -> str:
    """Base family of a UNet from its cross-attention context width (768 SD1.5, 2048 SDXL)."""
    for family, dim in FAMILY_CONTEXT_DIM.items():
        if dim == context_dim:
            return family
    return f"context{context_dim}"


def ip_adapter_order(layers: list[LayerSpec]) -> list[LayerSpec]:
    """Layers in IP-Adapter (diffusers) processor order: down (input), up (output), then mid.

    IP-Adapter numbers every attention processor, attn1 even and attn2 odd, so the n-th layer of
    this list is ``ip_adapter.{2n+1}``.
    """
    rank = {"input": 0, "output": 1, "middle": 2}
    return sorted(layers, key=lambda s: (rank[s.block], s.block_id, s.depth))
