"""Find the real ComfyUI and import it first, in CPU mode when asked: ComfyUI's own path.

ComfyUI is a folder of top-level modules (``nodes``, ``comfy``, ``folder_paths``, ...) that must be
importable before the trainer, the host layer or the tests import anything of ComfyUI. This module
puts ComfyUI's root FIRST on ``sys.path`` (the pack itself is the installed package
``nested_attention`` and never on ``sys.path``, so ``import nodes`` is always ComfyUI's). Standard
library only.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COMFYUI_ENV = "NESTED_ATTENTION_COMFYUI"


class HostNotFoundError(RuntimeError):
    """No usable ComfyUI where we look for one, or it was imported in the wrong order."""


def is_comfy_root(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / "nodes.py").is_file() and (path / "comfy").is_dir()


def pack_location_root() -> Path | None:
    """ComfyUI's root when this pack sits in ``ComfyUI/custom_nodes/<pack>``, else None."""
    parent = REPO_ROOT.parent
    if parent.name == "custom_nodes" and is_comfy_root(parent.parent):
        return parent.parent
    return None


def find_comfy_root(comfy_root: str | os.PathLike | None = None, search_pack_location: bool = False) -> Path:
    """ComfyUI's root: the argument; else (``search_pack_location``) the ComfyUI this pack is
    installed in; else ``$NESTED_ATTENTION_COMFYUI``; else ``<repo>/.host/ComfyUI`` (development)."""
    if comfy_root is not None:
        candidate, origin = Path(comfy_root), "the given ComfyUI folder"
    elif search_pack_location and pack_location_root() is not None:
        candidate, origin = pack_location_root(), "the ComfyUI this pack is installed in"
    elif os.environ.get(COMFYUI_ENV):
        candidate, origin = Path(os.environ[COMFYUI_ENV]), f"${COMFYUI_ENV}"
    else:
        candidate, origin = REPO_ROOT / ".host" / "ComfyUI", "the development copy"
    root = candidate.expanduser().resolve()
    if not is_comfy_root(root):
        raise HostNotFoundError(
            f"no ComfyUI at {root} ({origin}; looked for nodes.py and comfy/): install this pack in "
            f"ComfyUI/custom_nodes/, pass the ComfyUI folder (--comfyui DIR for the trainer), set "
            f"${COMFYUI_ENV}, or run `make setup` for the development copy")
    return root


def bootstrap_comfy(comfy_root: str | os.PathLike | None = None, cpu: bool = True,
                    search_pack_location: bool = False) -> Path:
    """Put ComfyUI first on ``sys.path`` and switch it to CPU mode before it picks a device.

    Idempotent. ``cpu`` must be decided before ``comfy.model_management`` is first imported;
    asking for CPU after another device was chosen raises instead of silently using that device.
    """
    root = find_comfy_root(comfy_root, search_pack_location)
    entry = str(root)
    if not sys.path or sys.path[0] != entry:
        while entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)

    loaded_nodes = sys.modules.get("nodes")
    if loaded_nodes is not None and Path(getattr(loaded_nodes, "__file__", "") or "").parent != root:
        raise HostNotFoundError(
            f"a module 'nodes' from {getattr(loaded_nodes, '__file__', None) or loaded_nodes.__path__} "
            f"was imported before ComfyUI's nodes.py: put {root} before the repository root on sys.path")

    import comfy.cli_args  # parses no argv unless comfy.options.enable_args_parsing() was called

    if cpu and not comfy.cli_args.args.cpu:
        if "comfy.model_management" in sys.modules:
            raise HostNotFoundError(
                "comfy.model_management was imported before bootstrap_comfy(cpu=True): call "
                "bootstrap_comfy() first")
        comfy.cli_args.args.cpu = True
    return root
