"""Render each real-model template's thumbnail (``example_workflows/<name>.jpg``) from its own graph.

    make thumbnails        # = .venv/bin/python tests/browser/thumbnails.py [NAME ...]

No trained Nested Attention weights for SD1.5 or SDXL exist, so no template can show a generated
image; its thumbnail is what a user sees on opening it: the graph, drawn by ComfyUI's own frontend
in the browser test's headless Chromium (a real server with this pack, no models), the whole graph
fitted into a 3:2 view, saved as a JPEG. Each template's note says so. The toy world's template
keeps its own thumbnail (an image from a run: ``toyworld/``).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the package harness

from harness import server as harness  # noqa: E402
from harness.browser import READY, close_dialogs, launched_chromium  # noqa: E402

TEMPLATES_DIR = harness.REPO_ROOT / "example_workflows"
TEMPLATES = ("sd15_region_mask", "sdxl_one_subject", "sdxl_two_subjects")
VIEW = (1500, 1000)  # the canvas, CSS pixels
SIZE = (600, 400)  # the saved thumbnail
MARGIN = 30  # graph units around the nodes
# No templates dialog on a fresh user folder, no canvas statistics (FPS, node counts) in the corner.
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Graph.CanvasInfo": False}

# Only the canvas and the widgets drawn over it (text boxes) stay visible: no menus, tabs, side bar, minimap.
ONLY_THE_GRAPH = """body * { visibility: hidden !important; }
#graph-canvas, .dom-widget, .dom-widget * { visibility: visible !important; }"""
FIT_GRAPH = """(margin) => {
    const nodes = app.graph.nodes, title = LiteGraph.NODE_TITLE_HEIGHT;
    const left = Math.min(...nodes.map(n => n.pos[0])), top = Math.min(...nodes.map(n => n.pos[1] - title));
    const right = Math.max(...nodes.map(n => n.pos[0] + n.size[0])), bottom = Math.max(...nodes.map(n => n.pos[1] + n.size[1]));
    app.canvas.ds.fitToBounds([left - margin, top - margin, right - left + 2 * margin, bottom - top + 2 * margin], {zoom: 1});
    app.canvas.setDirty(true, true);
    return app.canvas.ds.scale; }"""


def render(page, name: str) -> bytes:
    """The JPEG of template ``name``, drawn on the page's canvas."""
    from PIL import Image

    workflow = json.loads((TEMPLATES_DIR / f"{name}.json").read_text())
    page.evaluate("(w) => app.loadGraphData(w)", workflow)
    page.wait_for_function(f"app.graph.nodes.length === {len(workflow['nodes'])}", timeout=20_000)
    close_dialogs(page)  # the frontend's missing-models list (these models are not installed here)
    page.evaluate(FIT_GRAPH, MARGIN)
    style = page.add_style_tag(content=ONLY_THE_GRAPH)
    page.wait_for_timeout(800)
    shot = page.locator("#graph-canvas").screenshot()
    style.evaluate("(element) => element.remove()")
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    image.thumbnail(SIZE, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", default=TEMPLATES, help="templates to render (default: all real ones)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as base, tempfile.TemporaryDirectory() as no_models:
        settings = Path(base) / "user" / "default" / "comfy.settings.json"
        settings.parent.mkdir(parents=True)
        settings.write_text(json.dumps(SETTINGS))
        with harness.running_server(base, no_models, frontend=True) as server, launched_chromium() as browser:
            render_all(server, browser, args.names)


def render_all(server, browser, names) -> None:
    page = browser.new_page(viewport={"width": VIEW[0], "height": VIEW[1]})
    try:
        page.goto(server.url)
        page.wait_for_function(READY, timeout=120_000)
        page.wait_for_timeout(1500)
        for name in names:
            path = TEMPLATES_DIR / f"{name}.jpg"
            path.write_bytes(render(page, name))
            print(f"{path.relative_to(harness.REPO_ROOT)}: {path.stat().st_size} bytes")
    finally:
        page.close()


if __name__ == "__main__":
    main()
