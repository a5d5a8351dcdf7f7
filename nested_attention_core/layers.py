"""Cross-attention layers of a denoiser, named the same way everywhere.

A layer id is ``"<block>_<block_id>_<depth>"``, e.g. ``"input_4_1"``: it maps 1:1 onto the host's
attn2 patch key ``(block, block_id, depth)`` where ``depth`` is the index of the transformer block
inside its SpatialTransformer. Each nested layer projects the subject tokens into that layer's
inner width (heads * dim_head). Block names are the family's (a UNet has input, middle, output; a
joint-attention transformer would name its own blocks).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True, order=True)
class LayerSpec:
    block: str  # "input" | "middle" | "output" in a UNet
    block_id: int
    depth: int
    width: int  # inner width of the attention layer (heads * dim_head)

    @property
    def id(self) -> str:
        return f"{self.block}_{self.block_id}_{self.depth}"

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.block, self.block_id, self.depth)


def parse_layer_id(layer_id: str, width: int) -> LayerSpec:
    parts = str(layer_id).rsplit("_", 2)
    if len(parts) != 3 or not parts[0].isidentifier() or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(f"layer id {layer_id!r} is not '<block>_<block id>_<depth>' (e.g. 'input_4_1')")
    return LayerSpec(parts[0], int(parts[1]), int(parts[2]), int(width))


def layer_table(block: str, levels: dict[int, tuple[int, int]]) -> list[LayerSpec]:
    """{block_id: (depth, width)} -> the layers of one block group, in order."""
    return [LayerSpec(block, i, d, w) for i, (depth, w) in sorted(levels.items()) for d in range(depth)]


def unet_cross_attention(diffusion_model) -> Iterator[tuple[LayerSpec, object]]:
    """(layer, attn2 module) of every cross-attention layer of a ComfyUI UNetModel, in input,
    middle, output order; none for a denoiser that is not such a UNet (a DiT such as Flux or SD3).
    Duck-typed (blocks holding ``transformer_blocks`` with an ``attn2``), so the core needs no
    ComfyUI import."""
    if not all(hasattr(diffusion_model, blocks) for blocks in ("input_blocks", "output_blocks")):
        return
    groups = [("input", list(diffusion_model.input_blocks))]
    if getattr(diffusion_model, "middle_block", None) is not None:
        groups.append(("middle", [diffusion_model.middle_block]))
    groups.append(("output", list(diffusion_model.output_blocks)))
    for block, modules in groups:
        for block_id, module in enumerate(modules):
            for sub in module:
                for depth, transformer_block in enumerate(getattr(sub, "transformer_blocks", ())):
                    attn2 = getattr(transformer_block, "attn2", None)
                    if attn2 is not None:
                        yield LayerSpec(block, block_id, depth, attn2.to_q.out_features), attn2


def ip_adapter_order(layers: list[LayerSpec]) -> list[LayerSpec]:
    """Layers in IP-Adapter (diffusers) processor order: down (input), up (output), then mid.

    IP-Adapter numbers every attention processor, attn1 even and attn2 odd, so the n-th layer of
    this list is ``ip_adapter.{2n+1}``.
    """
    rank = {"input": 0, "output": 1, "middle": 2}
    return sorted(layers, key=lambda s: (rank[s.block], s.block_id, s.depth))
