"""The toy world's workflow in headless Chromium, on ComfyUI's own frontend and a server with the toy models.

Loaded as a user would drop the file (``toyworld/workflows/``, not a template), run from the Run
button to the image in Save Image and the preview's maps; the screenshot is the README's
(``tests/browser/screenshots/toyworld_workflow.png``, copied to ``docs/images/`` by hand).
"""
from __future__ import annotations

import pytest

from harness.browser import load_workflow_file, opened_page, run_and_wait

from nested_attention.toyworld import toy_server


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    with toy_server.running_toy_server(tmp_path_factory.mktemp("comfyui_toy_browser"), frontend=True) as server:
        with opened_page(browser, server.url) as opened:
            yield opened


def test_the_toy_workflow_runs_from_the_run_button(page, screenshots):
    load_workflow_file(page, toy_server.WORKFLOW)
    assert run_and_wait(page) == "execution_success"
    page.wait_for_function("""app.graph.nodes.filter(n => ['SaveImage', 'PreviewImage'].includes(n.type))
                               .every(n => n.imgs?.length > 0)""", timeout=20_000)
    shown = page.evaluate("app.graph.nodes.find(n => n.type === 'SaveImage').imgs[0].src")
    assert "toyworld_two_subjects" in shown
    page.evaluate("app.canvas.ds.offset = [90, 150]; app.canvas.ds.scale = 0.62; app.canvas.setDirty(true, true)")
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshots / "toyworld_workflow.png"))
