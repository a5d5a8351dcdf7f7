"""DEMO/TEST-ONLY ComfyUI custom-node folder: teaches a server the toy world's and the tests' models.

Linked into a server's ``custom_nodes/`` beside the Nested Attention pack by the server harness
(``toyworld/server.py``: the tests and ``make demo``), so that CheckpointLoaderSimple and
CLIPVisionLoader load the toy world's base model and CLIP vision tower and the tests' tiny SDXL and
CLIP vision tower. Adds no nodes. Never install it in a real ComfyUI: the pack itself registers
nothing of the kind. Needs the repository installed as ``nested_attention`` (``make setup``).
"""
from nested_attention.toyworld.comfy_models import register_toy_models
from nested_attention.toyworld.tiny_comfy import register_test_models

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

register_toy_models()
register_test_models()
