"""Nested Attention for ComfyUI: subject-driven generation by nested cross-attention values.

ComfyUI imports this folder as a custom node pack and calls ``comfy_entrypoint``.
"""
import os
import sys

# The pure-torch core is imported by its own name, one copy for nodes, training and tests. The folder
# is APPENDED so that our `nodes/` package never shadows ComfyUI's own `nodes` module.
_HERE = os.path.dirname(os.path.realpath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

from .nodes import NODES  # noqa: E402
from comfy_api.latest import ComfyExtension, io  # noqa: E402


class NestedAttentionExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> NestedAttentionExtension:
    return NestedAttentionExtension()
