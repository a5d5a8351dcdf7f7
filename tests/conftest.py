"""Shared fixtures. Lazy: tests that use none of them never import ComfyUI.

Everything of the repository is imported as the installed package ``nested_attention``; ComfyUI's
root goes first on ``sys.path`` (``nested_attention.training.bootstrap``), so its ``nodes.py`` is
the only top-level ``nodes``.
"""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def comfy_root() -> Path:
    """The real ComfyUI, imported in CPU mode."""
    from nested_attention.training.bootstrap import bootstrap_comfy

    return bootstrap_comfy()


@pytest.fixture(scope="session")
def host(comfy_root):
    """The pack's host layer (``nested_attention.nodes.host``), with ComfyUI imported first."""
    from nested_attention.nodes import host

    return host


@pytest.fixture(scope="session")
def tiny_models(comfy_root) -> dict[str, Path]:
    """The tiny models (written once, see harness/tiny_models.py), with the test-only ones registered."""
    from harness import tiny_comfy, tiny_models

    paths = tiny_models.write_tiny_models(tiny_models.default_models_dir())
    tiny_comfy.register_test_models()
    return paths


@pytest.fixture(scope="session")
def server_harness():
    """harness/server.py: real ComfyUI server processes, workflows, images."""
    from harness import server

    return server


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (harness/browser.py), one for the session: Playwright's sync API runs once
    per process, so the product's and the toy world's browser tests share it."""
    from harness.browser import launched_chromium

    with launched_chromium() as launched:
        yield launched


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """``tests/browser/screenshots/`` (git-ignored)."""
    from harness.browser import SCREENSHOTS

    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
