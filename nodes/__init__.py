"""The pack's ComfyUI nodes (V3 schema). Node ids are the workflow contract: never rename them."""
from .apply import ApplyNestedAttention
from .loader import NestedAttentionLoader
from .subject import NestedAttentionSubject
from .subject_files import NestedAttentionLoadSubject, NestedAttentionSaveSubject
from .text_encode import NestedAttentionTextEncode
from .toy_models import register_toy_models
from .types import register_model_folders

NODES = (NestedAttentionLoader, NestedAttentionSubject, NestedAttentionTextEncode, ApplyNestedAttention,
         NestedAttentionSaveSubject, NestedAttentionLoadSubject)

register_model_folders()  # before any schema lists the folders' files
register_toy_models()  # the toy world's demo models (exact toy sizes only)

__all__ = ["NODES", "register_model_folders"]
