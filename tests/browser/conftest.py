"""A real Chromium (Playwright's Python API) on ComfyUI's own frontend, served by a real server.

The browser is the one ``make browser`` set up: Debian's ``chromium`` package (Playwright launched
with ``executable_path`` at the real binary, not the /usr/bin shell wrapper), else the Chromium that
``playwright install chromium`` downloaded. Screenshots go to ``tests/browser/screenshots/`` (git-ignored).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM_BINARIES = ("/usr/lib/chromium/chromium", "/usr/lib/chromium-browser/chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium_executable() -> str | None:
    """A Chromium already on the machine, or None (then Playwright's own download is used)."""
    for path in CHROMIUM_BINARIES:
        if Path(path).is_file():
            return path
    return None if shutil.which("chromium") is None else shutil.which("chromium")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
