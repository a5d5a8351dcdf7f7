"""The real templates on the newest frontend (``comfyui-frontend-package`` 1.58.1, ``make browser``).

ComfyUI 0.3.75 pins frontend 1.32.9 (``test_frontend.py``); users who update get a newer one, which
lists a workflow's missing models in its Issues panel from the model-loading nodes' ``properties.models``
(name, folder, download url). The same server with the pack serves the newest frontend from its own
folder (``--front-end-root``); each real template is loaded and the panel must name every file the
template needs, with a Download button for the files that have a download url, and the Nested
Attention weights (no url: they are trained, not downloaded) by name.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import server as harness
from harness.browser import READY

NEWEST_FRONTEND_ENV = "NESTED_ATTENTION_NEWEST_FRONTEND"
DEFAULT_NEWEST_FRONTEND = harness.REPO_ROOT / ".venv" / "frontend-newest" / "comfyui_frontend_package" / "static"
REAL_TEMPLATES = ("sd15_region_mask", "sdxl_one_subject", "sdxl_two_subjects")


def newest_frontend() -> Path:
    path = Path(os.environ.get(NEWEST_FRONTEND_ENV) or DEFAULT_NEWEST_FRONTEND)
    if not (path / "index.html").is_file():
        pytest.fail(f"no frontend at {path}: run `make browser` (it installs the newest frontend into "
                    f".venv/frontend-newest), or point ${NEWEST_FRONTEND_ENV} at a comfyui_frontend_package/static folder")
    return path


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui_newest_frontend")
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))  # no templates dialog on start
    with harness.running_server(base, tmp_path_factory.mktemp("no_models"), frontend=newest_frontend()) as server:
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = context.new_page()
        page.goto(server.url)
        page.wait_for_function(READY, timeout=120_000)
        page.wait_for_timeout(1000)
        yield page
        context.close()


@pytest.mark.parametrize("name", REAL_TEMPLATES)
def test_the_issues_panel_names_each_missing_model_of_a_real_template(page, name, screenshots):
    workflow = harness.load_workflow(name)
    page.evaluate("(workflow) => app.loadGraphData(workflow)", workflow)
    page.get_by_role("button", name="View details").first.click()
    section = page.get_by_text("Missing Models", exact=True).first
    section.wait_for(state="visible", timeout=20_000)
    panel = page.locator("div").filter(has=section).filter(has_text="Download all").last
    page.screenshot(path=str(screenshots / f"10_newest_frontend_missing_models_{name}.png"))
    text = panel.inner_text()
    listed = [m for node in workflow["nodes"] for m in node.get("properties", {}).get("models", [])]
    assert {m["directory"] for m in listed} == {"checkpoints", "clip_vision"}, listed
    lines = [line.strip() for line in text.splitlines()]
    for model in listed:
        at = lines.index(model["name"])  # the file's name, then its folder, then its Download button
        assert lines[at + 1:at + 3] == [model["directory"], "Download"], (model, lines)
    weights = next(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "NestedAttentionLoader")
    assert weights in lines and lines[lines.index(weights) + 1] != "Download", lines  # named, nothing to download
    page.get_by_role("button", name="Download all").wait_for(state="visible")
    page.keyboard.press("Escape")
