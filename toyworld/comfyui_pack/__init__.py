"""TOY-WORLD-ONLY ComfyUI custom-node folder: teaches a ComfyUI process the toy world's models.

Linked into a server's ``custom_nodes/`` beside the Nested Attention pack by the toy world's demo
and tests (``toyworld/toy_server.py``), so that CheckpointLoaderSimple and CLIPVisionLoader load the toy world's base model and
CLIP vision tower. Adds no nodes. Never install it in a real ComfyUI: the pack itself registers
nothing of the kind. Needs the repository installed as ``nested_attention`` (``make setup``).
"""
from nested_attention.toyworld.comfy_models import register_toy_models

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

register_toy_models()
