"""Shared fixtures. Lazy: tests that use none of them never import ComfyUI.

ComfyUI's root goes first on sys.path (fixtures/host.py); the repository root is only appended,
so ComfyUI's ``nodes.py`` is never shadowed by this pack's ``nodes/`` folder.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures"
TINY_MODELS_ENV = "NESTED_ATTENTION_TINY_MODELS"

if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

collect_ignore = ["fixtures"]  # helpers (test_host_models.py is not a test module)


def fixture_module(name: str):
    """A module of tests/fixtures/, loaded by path once under the name its siblings use too."""
    qualname = f"nested_attention_test_fixtures_{name}"
    if qualname not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualname, FIXTURES_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualname] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[qualname]
            raise
    return sys.modules[qualname]


@pytest.fixture(scope="session")
def comfy_root() -> Path:
    """The real ComfyUI, imported in CPU mode."""
    return fixture_module("host").bootstrap_comfy()


@pytest.fixture(scope="session")
def fixture_modules(comfy_root):
    """tests/fixtures as a namespace: ``host``, ``tiny_models``, ``test_host_models``."""
    return types.SimpleNamespace(**{name: fixture_module(name) for name in ("host", "tiny_models", "test_host_models")})


@pytest.fixture(scope="session")
def tiny_models(fixture_modules) -> dict[str, Path]:
    """The tiny models (written once, see fixtures/tiny_models.py), with the test-only ones registered."""
    out_dir = os.environ.get(TINY_MODELS_ENV) or REPO_ROOT / ".tiny_models"
    paths = fixture_modules.tiny_models.write_tiny_models(out_dir)
    fixture_modules.test_host_models.register_test_models()
    return paths


@pytest.fixture(scope="session")
def pack(comfy_root):
    """This repository imported as the package ``nested_attention_pack``."""
    return fixture_module("host").load_pack()


@pytest.fixture(scope="session")
def server_harness():
    """tests/fixtures/server.py: real ComfyUI server processes, workflows, images."""
    return fixture_module("server")
