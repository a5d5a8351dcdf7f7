"""TEST-ONLY ComfyUI custom-node folder: teaches a ComfyUI process the tests' tiny models.

Linked into a server's ``custom_nodes/`` beside the Nested Attention pack by the server harness
(``harness/server.py``), and passed to the trainer's subprocesses as ``--extra-module``, so that
CheckpointLoaderSimple and CLIPVisionLoader load the tiny SDXL and the tiny CLIP vision tower. Adds
no nodes. Never install it in a real ComfyUI: the pack itself registers nothing of the kind. Needs
the repository installed as ``nested_attention`` (``make setup``).
"""
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[2])  # loaded by file path: put ``harness``'s folder on sys.path
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

from harness.tiny_comfy import register_test_models  # noqa: E402

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

register_test_models()
