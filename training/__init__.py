"""The Nested Attention trainer: ``nested-attention-train --help`` (or ``python -m nested_attention.training``).

Importing the package imports nothing: ``bootstrap`` (standard library only) finds and imports
ComfyUI first; every other module may import ComfyUI through the pack's host layer, so it is
imported after that.
"""
