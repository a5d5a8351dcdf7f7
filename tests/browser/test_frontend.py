"""A new user's walk through the pack in headless Chromium, on ComfyUI's own frontend and a real server.

One server for the module (the tiny random test models and weights, the frontend served), one page:
the page loads with no console error naming the pack; the pack's nodes are registered and found by
search; every template loads from the Templates browser with no missing-node warning; a tooltip
shows on hover; the SDXL template's missing weights are reported on Run before anything runs; the
tests' two-subject workflow on the tiny SD1.5 (harness/workflows/) runs from the Run button to an
image in Save Image and the preview's maps; Save Subject shows the saved name on the node (read from
the page as drawn), says "already saved as" on a rerun that reuses the file and writes it again once
it is deleted, and Load Subject lists it without a refresh; a weight typed out of range is reported on
the Apply node, not clamped.
"""
from __future__ import annotations

import contextlib
import json

import pytest
from fixtures import tiny_weights
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from harness import server as harness
from harness.browser import close_dialogs, load_workflow_file, opened_page, run_and_wait

PACK_WORDS = ("nested", "comfyui-nested-attention", "nested_attention")
SEARCHES = ("nested", "personalize", "subject", "ip adapter", "reference", "identity")
TEMPLATES = ("sd15_region_mask", "sdxl_two_subjects", "sdxl_one_subject")  # for real models: not installed here
# With --disable-api-nodes the frontend's registry look-ups are blocked (CSP) and logged: harmless offline.
OFFLINE_NOISE = ("api.comfy.org", "Content Security Policy", "registry")


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    models_dir = tiny_models["sd15"].parents[1]
    tiny_weights.write_tiny_weights(models_dir)
    with harness.running_server(tmp_path_factory.mktemp("comfyui_browser"), models_dir, frontend=True) as running:
        yield running


@pytest.fixture(scope="module")
def page(browser, server):
    with opened_page(browser, server.url) as opened:
        yield opened


def load_template(page, name: str) -> None:
    """Open the Templates browser, pick the pack's category and click the template's card."""
    close_dialogs(page)
    page.get_by_role("button", name="Templates").first.click()
    dialog = page.locator("[role=dialog]").filter(has_text="All Templates")
    dialog.wait_for(state="visible", timeout=20_000)
    dialog.get_by_text(harness.PACK_DIR_NAME, exact=True).first.click()
    dialog.get_by_text(name.replace("_", " "), exact=True).first.click()
    expected = len(harness.load_workflow(name)["nodes"])
    page.wait_for_function(f"app.graph.nodes.length === {expected}", timeout=20_000)
    page.wait_for_timeout(500)


def open_node_search(page, box, screenshots):
    """Double-click the empty canvas until the node search box shows (as a user would try again).

    A double-click can land while the app is still busy (a late dialog, a slow first render on a
    loaded machine); LiteGraph then sees two single clicks. Three tries, then a screenshot and the
    dialogs on screen in the failure message.
    """
    search = page.locator(".comfy-vue-node-search-container input").first
    for _ in range(3):
        close_dialogs(page)
        page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        with contextlib.suppress(PlaywrightTimeout):
            search.wait_for(state="visible", timeout=5_000)
            return search
    page.screenshot(path=str(screenshots / "02_search_did_not_open.png"))
    raise AssertionError(f"the node search did not open on double-click; dialogs: "
                         f"{page.locator('[role=dialog]').all_inner_texts()}")


def test_the_page_loads_with_no_console_error_naming_the_pack(page, screenshots):
    page.wait_for_timeout(1500)
    page.screenshot(path=str(screenshots / "01_loaded.png"))
    ours = [e for e in page.console_errors if any(w in e.lower() for w in PACK_WORDS)
            and not any(n in e for n in OFFLINE_NOISE)]
    assert not ours, ours


def test_the_pack_nodes_are_registered_and_found_by_search(page, server, screenshots):
    registered = page.evaluate("Object.keys(LiteGraph.registered_node_types)")
    assert set(harness.PACK_NODE_IDS) <= set(registered)
    ours = {server.object_info()[i]["display_name"] for i in harness.PACK_NODE_IDS}
    close_dialogs(page)
    page.evaluate("app.graph.clear()")  # an empty canvas to double-click on
    box = page.locator("#graph-canvas").bounding_box()
    for word in SEARCHES:
        search = open_node_search(page, box, screenshots)
        search.fill(word)
        with contextlib.suppress(PlaywrightTimeout):
            page.locator("[role=option]").first.wait_for(state="visible", timeout=5_000)
        page.wait_for_timeout(300)
        found = page.locator("[role=option]").all_inner_texts()
        page.screenshot(path=str(screenshots / f"02_search_{word.replace(' ', '_')}.png"))
        page.keyboard.press("Escape")
        search.wait_for(state="hidden", timeout=5_000)
        assert any(name in text for text in found for name in ours), (word, found)


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_loads_from_the_templates_browser(page, name, screenshots):
    load_template(page, name)
    page.screenshot(path=str(screenshots / f"03_template_{name}.png"))
    warnings = [t for t in page.locator("[role=dialog]").all_inner_texts() if "node types were not found" in t]
    assert not warnings, warnings
    close_dialogs(page)  # the real templates' missing models (test_a_real_template_lists_its_missing_models)
    types = page.evaluate("app.graph.nodes.map(n => n.type)")
    assert all(t in page.evaluate("Object.keys(LiteGraph.registered_node_types)") for t in types)
    note_on_screen = page.evaluate("""() => { const n = app.graph.nodes.find(n => n.type === 'Note');
        const [x, y] = app.canvas.ds.convertOffsetToCanvas(n.pos); return [x, y, app.canvas.ds.scale]; }""")
    x, y, scale = note_on_screen
    assert 60 <= x < 400 and 100 <= y < 400 and scale >= 0.75, note_on_screen  # the note opens in view, readable


def test_a_tooltip_shows_on_hover(page):
    load_workflow_file(page, harness.TINY_WORKFLOW)
    close_dialogs(page)
    at = page.evaluate("""() => { const n = app.graph.nodes.find(n => n.type === 'ApplyNestedAttention');
        const p = n.getConnectionPos(true, 0); return app.canvas.ds.convertOffsetToCanvas(p); }""")
    box = page.locator("#graph-canvas").bounding_box()
    page.mouse.move(box["x"] + at[0] + 3, box["y"] + at[1])
    tooltip = page.locator(".node-tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    assert "SD1.5" in tooltip.inner_text() and "SDXL" in tooltip.inner_text()


def test_missing_weights_are_reported_on_run_before_anything_runs(page, screenshots):
    load_template(page, "sdxl_one_subject")
    close_dialogs(page)  # the frontend's missing-models list, on load
    page.evaluate("window.__na_events = []")
    page.get_by_role("button", name="Run", exact=True).first.click()
    message = page.locator("[role=dialog]").filter(has_text="training/")
    message.wait_for(state="visible", timeout=20_000)
    page.screenshot(path=str(screenshots / "04_missing_weights.png"))
    text = message.inner_text()
    assert "nested_attention_sdxl.safetensors" in text and "IP-Adapter Plus" in text, text
    assert page.evaluate("window.__na_events") == []  # refused at validation: nothing ran
    close_dialogs(page)


def test_the_two_subject_workflow_runs_from_the_run_button(page, screenshots):
    load_workflow_file(page, harness.TINY_WORKFLOW)
    assert run_and_wait(page) == "execution_success"
    page.wait_for_function("""app.graph.nodes.filter(n => ['SaveImage', 'PreviewImage'].includes(n.type))
                               .every(n => n.imgs?.length > 0)""", timeout=20_000)
    shown = page.evaluate("app.graph.nodes.find(n => n.type === 'SaveImage').imgs[0].src")
    assert "tiny_two_subjects" in shown
    page.evaluate("app.canvas.ds.offset = [90, 150]; app.canvas.ds.scale = 0.62; app.canvas.setDirty(true, true)")
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshots / "tiny_two_subjects_workflow.png"))


def saved_as_shown(page, save_id: int, screenshots, shot: str) -> str:
    """The text the Save Subject node shows, read from the page as drawn: the element must be visible,
    inside the viewport and over the node."""
    page.evaluate(f"""() => {{ const node = app.graph.getNodeById({save_id});
        app.canvas.ds.scale = 1; app.canvas.centerOnNode(node); app.canvas.setDirty(true, true); }}""")
    shown = page.locator(".nested-attention-saved-as")
    shown.wait_for(state="visible", timeout=10_000)
    page.wait_for_timeout(300)  # the element follows the node on the next frame
    box, viewport = shown.bounding_box(), page.viewport_size
    assert box and box["width"] > 20 and box["height"] > 8, box
    assert 0 <= box["x"] and box["x"] + box["width"] <= viewport["width"], (box, viewport)
    assert 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"], (box, viewport)
    node = page.evaluate(f"""() => {{ const node = app.graph.getNodeById({save_id});
        const rect = app.canvas.canvas.getBoundingClientRect();
        const [x, y] = app.canvas.ds.convertOffsetToCanvas(node.pos);
        const [w, h] = [node.size[0] * app.canvas.ds.scale, node.size[1] * app.canvas.ds.scale];
        return {{x: rect.left + x, y: rect.top + y, w, h}}; }}""")
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert node["x"] <= centre[0] <= node["x"] + node["w"] and node["y"] <= centre[1] <= node["y"] + node["h"], (box, node)
    page.screenshot(path=str(screenshots / shot))
    return shown.inner_text().strip()


def test_save_subject_shows_the_name_and_load_subject_lists_it(page, server, screenshots):
    added = page.evaluate("""() => {
        const subject = app.graph.nodes.find(n => n.type === 'NestedAttentionSubject');
        const save = LiteGraph.createNode('NestedAttentionSaveSubject'); save.pos = [400, 1300]; app.graph.add(save);
        subject.connect(0, save, 0);
        const load = LiteGraph.createNode('NestedAttentionLoadSubject'); load.pos = [800, 1300]; app.graph.add(load);
        return [save.id, load.id, load.widgets[0].value]; }""")
    save_id, load_id, before = added
    assert before.startswith("no saved subjects yet")
    folder = server.base_dir / "models" / "nested_attention_subjects"
    assert run_and_wait(page) == "execution_success"
    shown = saved_as_shown(page, save_id, screenshots, "05_saved_as.png")
    assert shown.startswith("saved as subject_") and shown.endswith(".safetensors"), shown
    saved = shown.removeprefix("saved as ")
    assert sorted(p.name for p in folder.glob("subject_*")) == [saved]
    page.wait_for_function(f"app.graph.getNodeById({load_id}).widgets[0].options.values.includes({json.dumps(saved)})",
                           timeout=10_000)

    # Run again, nothing changed: ComfyUI reuses the result, and the node says so; nothing is written
    assert run_and_wait(page) == "execution_success"
    page.wait_for_function("document.querySelector('.nested-attention-saved-as')?.textContent.startsWith('already')",
                           timeout=10_000)
    assert saved_as_shown(page, save_id, screenshots, "06_already_saved_as.png") == f"already saved as {saved}"
    assert sorted(p.name for p in folder.glob("subject_*")) == [saved]

    # the file deleted: the next run writes it again rather than naming a file that is not there
    (folder / saved).unlink()
    assert run_and_wait(page) == "execution_success"
    page.wait_for_function("document.querySelector('.nested-attention-saved-as')?.textContent.startsWith('saved as')",
                           timeout=10_000)
    again = saved_as_shown(page, save_id, screenshots, "07_saved_again.png").removeprefix("saved as ")
    assert sorted(p.name for p in folder.glob("subject_*")) == [again]


def type_into_widget(page, node_type: str, widget: str, text: str) -> None:
    """Click the middle of a node's number widget on the canvas, type ``text`` in the prompt that opens."""
    xy = page.evaluate(f"""() => {{ const node = app.graph.nodes.find(n => n.type === {json.dumps(node_type)});
        app.canvas.ds.scale = 1; app.canvas.centerOnNode(node); app.canvas.setDirty(true, true);
        const w = node.widgets.find(w => w.name === {json.dumps(widget)});
        const rect = app.canvas.canvas.getBoundingClientRect();
        const [x, y] = app.canvas.ds.convertOffsetToCanvas(
            [node.pos[0] + node.size[0] / 2, node.pos[1] + w.y + LiteGraph.NODE_WIDGET_HEIGHT / 2]);
        return [rect.left + x, rect.top + y]; }}""")
    page.wait_for_timeout(300)
    page.mouse.click(*xy)
    field = page.locator(".graphdialog input").last
    field.wait_for(state="visible", timeout=5_000)
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)


def test_a_weight_out_of_range_is_reported_on_the_apply_node_not_clamped(page, screenshots):
    load_workflow_file(page, harness.TINY_WORKFLOW)
    close_dialogs(page)
    apply_id = page.evaluate("String(app.graph.nodes.find(n => n.type === 'ApplyNestedAttention').id)")
    type_into_widget(page, "ApplyNestedAttention", "weight", "1e999")
    # what Run sends: the number as typed (as large as JSON carries), not clamped to 5 without a word
    sent = page.evaluate(f"(async () => (await app.graphToPrompt()).output[{json.dumps(apply_id)}].inputs.weight)()")
    assert sent > 5, sent
    page.evaluate("window.__na_events = []")
    page.get_by_role("button", name="Run", exact=True).first.click()
    message = page.locator("[role=dialog]").filter(has_text="type a value from 0 to 5")
    message.wait_for(state="visible", timeout=20_000)
    page.screenshot(path=str(screenshots / "08_weight_out_of_range.png"))
    assert "weight" in message.inner_text()
    assert page.evaluate("Object.keys(app.lastNodeErrors ?? {})") == [apply_id]  # the node the frontend marks
    assert page.evaluate("window.__na_events") == []  # refused when queued: nothing ran
    close_dialogs(page)


def template_models(name: str) -> list[dict]:
    """The ``properties.models`` entries of a template's model-loading nodes."""
    return [m for node in harness.load_workflow(name)["nodes"] for m in node.get("properties", {}).get("models", [])]


@pytest.mark.parametrize("name", TEMPLATES)
def test_a_real_template_lists_its_missing_models_with_their_folders(page, name, screenshots):
    """The frontend's Missing Models dialog (from the nodes' ``properties.models``) names each file and its folder."""
    load_template(page, name)
    dialog = page.locator("[role=dialog]").filter(has_text="models were not found")
    dialog.wait_for(state="visible", timeout=10_000)
    page.screenshot(path=str(screenshots / f"05_missing_models_{name}.png"))
    text = dialog.inner_text()
    models = template_models(name)
    assert {m["directory"] for m in models} == {"checkpoints", "clip_vision"}, models
    for model in models:
        assert f"{model['directory']} / {model['name']}" in text, (model, text)
    assert dialog.get_by_role("button", name="Copy URL").count() == len(models), text
    close_dialogs(page)


CARD_IMAGE_SIZE = """(title) => {  // the natural size of the image on the card titled `title`
    const label = [...document.querySelectorAll('[role=dialog] *')].filter(e => e.textContent.trim() === title).at(-1);
    for (let card = label; card; card = card.parentElement) {
        const images = card.querySelectorAll('img');
        if (images.length === 1) return images[0].complete ? [images[0].naturalWidth, images[0].naturalHeight] : null;
        if (images.length > 1) return 'several images';
    }
    return 'no image'; }"""


def test_the_real_templates_show_their_thumbnails_in_the_templates_browser(page, screenshots):
    close_dialogs(page)
    page.get_by_role("button", name="Templates").first.click()
    dialog = page.locator("[role=dialog]").filter(has_text="All Templates")
    dialog.wait_for(state="visible", timeout=20_000)
    dialog.get_by_text(harness.PACK_DIR_NAME, exact=True).first.click()
    for name in TEMPLATES:
        dialog.get_by_text(name, exact=True).first.wait_for(state="visible", timeout=10_000)
        # the size the wait saw once the card holds one loaded image (a card is drawn before its image;
        # a second read could meet it re-rendering); on a timeout, what the card holds then
        loaded = f"(() => {{ const s = ({CARD_IMAGE_SIZE})({name!r}); return Array.isArray(s) ? s : null; }})()"
        try:
            size = page.wait_for_function(loaded, timeout=10_000).json_value()
        except PlaywrightTimeout:
            size = page.evaluate(f"({CARD_IMAGE_SIZE})({name!r})")
        assert size == [600, 400], name  # the template's .jpg, not a placeholder
    page.screenshot(path=str(screenshots / "09_template_thumbnails.png"))
    close_dialogs(page)
