"""The Nested Attention trainer: ``python training/train.py --help``.

Imported as the package ``nested_attention_training`` (``train.py`` and the test fixtures register it
by path; ``training/`` itself is never put on ``sys.path``). Importing the package imports nothing:
``comfy_host`` (standard library only) finds and boots ComfyUI, and every other module may import
ComfyUI and the pack, so it is imported after that.
"""
PACKAGE_NAME = "nested_attention_training"
