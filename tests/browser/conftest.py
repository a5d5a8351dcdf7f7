"""A real Chromium on ComfyUI's own frontend (``harness/browser.py``), one for the session."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def browser():
    from harness.browser import launched_chromium

    with launched_chromium() as launched:
        yield launched


@pytest.fixture(scope="session")
def screenshots() -> Path:
    from harness.browser import SCREENSHOTS

    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
