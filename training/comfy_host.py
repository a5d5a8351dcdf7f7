"""Find the real ComfyUI, import it first, and import this pack as a package.

ComfyUI is a folder of top-level modules (``nodes``, ``comfy``, ``folder_paths``, ...), and this
repository has a folder ``nodes/`` of its own. ComfyUI's root therefore always goes FIRST on
``sys.path``; the repository root is only ever appended, so ``import nodes`` is ComfyUI's.
The trainer and the test fixtures share this module. Standard library only.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "nested_attention_pack"
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


def append_repo_root() -> Path:
    """Make ``nested_attention_core`` importable without letting ``<repo>/nodes`` shadow ComfyUI."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))
    return REPO_ROOT


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


def load_pack():
    """Import the repository root as the package ``nested_attention_pack`` (as ComfyUI would).

    ComfyUI imports a custom-node folder by its ``__init__.py`` with the folder as the package
    path; this does the same, so the pack's relative imports resolve exactly as in a server.
    Call ``bootstrap_comfy`` first when ComfyUI is not at the default places.
    """
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    if "comfy" not in sys.modules:
        bootstrap_comfy()
    append_repo_root()
    init = REPO_ROOT / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(f"the pack has no {init} yet")
    return load_module_file(PACK_NAME, init, package_dir=REPO_ROOT)


def host_adapter():
    """The pack's ``nodes.host_adapter``: the very module the nodes use at inference."""
    return load_pack().nodes.host_adapter


def load_module_file(name: str, path: str | os.PathLike, package_dir: str | os.PathLike | None = None):
    """Execute a Python file as module ``name`` (once), e.g. a file given to ``--extra-module``;
    with ``package_dir``, ``path`` is that package's ``__init__.py`` and its relative imports work."""
    if name in sys.modules:
        return sys.modules[name]
    locations = None if package_dir is None else [str(package_dir)]
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
    if spec is None:
        raise HostNotFoundError(f"{path} is not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
