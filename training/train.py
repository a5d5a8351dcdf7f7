"""``python training/train.py ...``: the trainer's command line, for a pack folder in ComfyUI.

The same as ``nested-attention-train`` / ``python -m nested_attention.training``; it needs the pack
installed in this Python once (``pip install -e ComfyUI/custom_nodes/<this pack>``).
"""
import sys

if __name__ == "__main__":
    sys.path.pop(0)  # this folder's modules belong to the package, never to the top level
    try:
        from nested_attention.training.cli import main
    except ModuleNotFoundError as err:
        if err.name != "nested_attention":
            raise
        sys.exit("nested_attention is not installed in this Python: run `pip install -e <the pack's folder>` once "
                 "(the folder holding pyproject.toml), then run this again or use `nested-attention-train`")
    sys.exit(main())
