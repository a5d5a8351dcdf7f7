"""A real Chromium (Playwright's Python API) on ComfyUI's own frontend: launching it, and a user's steps.

The browser is the one ``make browser`` set up: Debian's ``chromium`` package (Playwright launched
with ``executable_path`` at the real binary, not the /usr/bin shell wrapper), else the Chromium that
``playwright install chromium`` downloaded. Screenshots go to ``tests/browser/screenshots/`` (git-ignored).
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

from .workflows import load_workflow

SCREENSHOTS = Path(__file__).resolve().parents[1] / "browser" / "screenshots"
CHROMIUM_BINARIES = ("/usr/lib/chromium/chromium", "/usr/lib/chromium-browser/chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
READY = "window.app && app.graph && Object.keys(LiteGraph.registered_node_types).length > 50"


def chromium_executable() -> str | None:
    """A Chromium already on the machine, or None (then Playwright's own download is used)."""
    for path in CHROMIUM_BINARIES:
        if Path(path).is_file():
            return path
    return None if shutil.which("chromium") is None else shutil.which("chromium")


@contextlib.contextmanager
def launched_chromium() -> Iterator:
    """A headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def opened_page(browser, url: str) -> Iterator:
    """A page on the frontend at ``url``, ready (nodes registered), collecting console errors in
    ``page.console_errors`` and execution events in ``window.__na_events``."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(f"{m.text} @ {m.location.get('url')}"))
    page.on("pageerror", lambda e: page.console_errors.append(f"{e}"))
    page.goto(url)
    page.wait_for_function(READY, timeout=120_000)
    page.evaluate("""() => { window.__na_events = [];
        for (const e of ['execution_start', 'execution_success', 'execution_error'])
            app.api.addEventListener(e, (ev) => window.__na_events.push([e, ev.detail?.prompt_id])); }""")
    try:
        yield page
    finally:
        context.close()


def close_dialogs(page) -> None:
    for _ in range(4):
        dialogs = page.locator("[role=dialog]")
        if not dialogs.count():
            return
        # the dialog's close button: the top-right-most button in its header
        corner = page.evaluate("""() => { const d = [...document.querySelectorAll('[role=dialog]')].at(-1);
            const top = d.getBoundingClientRect().top;
            const buttons = [...d.querySelectorAll('button')].map(b => b.getBoundingClientRect())
                .filter(r => r.width > 0 && r.top < top + 90).sort((a, b) => b.right - a.right);
            return buttons.length ? [buttons[0].x + buttons[0].width / 2, buttons[0].y + buttons[0].height / 2] : null; }""")
        if corner:
            page.mouse.click(*corner)
        else:
            page.keyboard.press("Escape")
        page.wait_for_timeout(400)
    assert not page.locator("[role=dialog]").count(), page.locator("[role=dialog]").all_inner_texts()


def load_workflow_file(page, path) -> None:
    """Load a workflow file into the canvas, as dropping it there would (``app.loadGraphData``)."""
    close_dialogs(page)
    workflow = load_workflow(Path(path))
    page.evaluate("(w) => app.loadGraphData(w)", workflow)
    page.wait_for_function(f"app.graph.nodes.length === {len(workflow['nodes'])}", timeout=20_000)
    page.wait_for_timeout(500)


def run_and_wait(page, timeout_s: float = 240) -> str:
    """Click Run; the last execution event (execution_success or execution_error)."""
    page.evaluate("window.__na_events = []")
    page.get_by_role("button", name="Run", exact=True).first.click()
    page.wait_for_function("window.__na_events.some(e => e[0] !== 'execution_start')", timeout=timeout_s * 1000)
    return page.evaluate("window.__na_events.filter(e => e[0] !== 'execution_start').at(-1)[0]")
