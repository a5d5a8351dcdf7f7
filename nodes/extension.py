"""The pack's ComfyUI extension: its model folders and its nodes."""
from comfy_api.latest import ComfyExtension, io

from .apply import ApplyNestedAttention
from .loader import NestedAttentionLoader
from .preview import NestedAttentionPreview
from .sockets import register_model_folders
from .subject import NestedAttentionSubject
from .subject_files import NestedAttentionLoadSubject, NestedAttentionSaveSubject
from .text_encode import NestedAttentionTextEncode

NODES = (NestedAttentionLoader, NestedAttentionSubject, NestedAttentionTextEncode, ApplyNestedAttention,
         NestedAttentionSaveSubject, NestedAttentionLoadSubject, NestedAttentionPreview)


class NestedAttentionExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        register_model_folders()  # before any schema lists the folders' files
        return list(NODES)
