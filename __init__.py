"""Nested Attention for ComfyUI: subject-driven generation by nested cross-attention values.

One import name in every process: this repository is the package ``nested_attention`` (``pip
install -e .``), and its modules import each other relatively. ComfyUI imports a custom-node folder
under a module name made from the folder's path; when it does, ``_canonical_package`` below binds
``nested_attention`` to this very folder (importing it normally when it is installed from here, by
its path otherwise: the repository's one bootstrap, ``load_module_file``, which also runs the
trainer's ``--extra-module`` files) and hands ComfyUI that package's entry point. So the nodes, the
trainer, the toy world and the tests share one copy of every module.

Importing this package imports nothing else; ComfyUI is imported when ``comfy_entrypoint`` runs.
"""
PACKAGE = "nested_attention"
WEB_DIRECTORY = "./web"  # the frontend extension (web/nested_attention.js) and the node help pages (web/docs/)


async def comfy_entrypoint():
    from .nodes.extension import NestedAttentionExtension

    return NestedAttentionExtension()


def load_module_file(name: str, path, package_dir=None):
    """Execute the Python file ``path`` as module ``name``, once; with ``package_dir`` it is that
    package's ``__init__.py``, so the package's relative imports work."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name]
    locations = None if package_dir is None else [str(package_dir)]
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
    if spec is None:
        raise ImportError(f"{path} is not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _canonical_package():
    """This folder as the package ``nested_attention`` (the module ComfyUI loaded it as is another)."""
    import importlib
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.realpath(__file__))
    package = sys.modules.get(PACKAGE)
    if package is None:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is not None and [os.path.realpath(p) for p in spec.submodule_search_locations or ()] == [here]:
            return importlib.import_module(PACKAGE)  # installed from this folder (pip install -e)
        return load_module_file(PACKAGE, os.path.join(here, "__init__.py"), package_dir=here)
    elif [os.path.realpath(p) for p in package.__path__] != [here]:
        raise ImportError(f"two copies of the Nested Attention pack: {list(package.__path__)} is imported as "
                          f"{PACKAGE!r} and ComfyUI loads {here}; keep one of them in custom_nodes")
    return package


if __name__ != PACKAGE:  # loaded by ComfyUI from custom_nodes/<folder>
    comfy_entrypoint = _canonical_package().comfy_entrypoint  # noqa: F811
