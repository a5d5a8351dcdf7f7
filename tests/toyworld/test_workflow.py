"""The toy world's example workflow, unchanged, in a real server on the committed toy-world models.

One server for the module (``toyworld/toy_server.py``), with ``toyworld/weights/models`` as its models
folder, this pack and the toy world's models pack (``toyworld/comfyui_pack``, which teaches ComfyUI
the toy sizes). The workflow (``toyworld/workflows/``) is converted from its UI format and queued as saved: same model and image names, 64 px,
20 steps, and the attention-map preview of the two subjects.
"""
from pathlib import Path

import pytest

from nested_attention.toyworld import toy_server

WORKFLOW = toy_server.WORKFLOW
SIZE = 64


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with toy_server.running_toy_server(tmp_path_factory.mktemp("comfyui_toy")) as running:
        yield running


def saved_pixels(run, prompt):
    import numpy as np
    from PIL import Image

    saves = [i for i, node in prompt.items() if node["class_type"] == "SaveImage"]
    images = [image for i in saves for image in run.outputs.get(i, {}).get("images", [])]
    assert len(images) == 1, run.outputs
    path = run.images[[p.name for p in run.images].index(images[0]["filename"])]
    assert path.is_absolute() and path.is_file(), path
    with Image.open(path) as image:
        assert (image.format, image.size) == ("PNG", (SIZE, SIZE))
        return path, np.asarray(image.convert("RGB"), np.float32)


def test_the_workflow_is_a_consistent_ui_workflow_outside_the_templates(server_harness):
    server_harness.check_ui_workflow(server_harness.load_workflow(WORKFLOW))
    assert not (server_harness.REPO_ROOT / "example_workflows" / WORKFLOW.name).exists()  # not a user template
    note = next(n for n in server_harness.load_workflow(WORKFLOW)["nodes"] if n["type"] == "Note")["widgets_values"][0]
    assert "not a template" in note and "toyworld/comfyui_pack" in note  # says where it runs, and where not


def test_the_workflow_names_the_committed_models(server_harness):
    harness = server_harness
    workflow = harness.load_workflow(WORKFLOW)
    loaded = {node["widgets_values"][0] for node in workflow["nodes"]
              if node["type"] in ("CheckpointLoaderSimple", "CLIPVisionLoader", "NestedAttentionLoader")}
    assert loaded == {Path(name).name for name in toy_server.TOY_MODEL_FILES}


def test_the_toy_family_is_named_where_the_toy_pack_is_loaded(server):
    model_tip = server.object_info()["ApplyNestedAttention"]["input"]["required"]["model"][1]["tooltip"]
    assert "the toy world's base" in model_tip, model_tip


def test_two_subjects_run_unchanged_and_change_the_image(server, server_harness):
    import numpy as np

    harness = server_harness
    prompt = harness.ui_to_api(harness.load_workflow(WORKFLOW), server.object_info())
    assert len(harness.nodes_of(prompt, "ApplyNestedAttention")) == 2
    path, image = saved_pixels(server.run(prompt, timeout=300), prompt)
    assert path.name.startswith("toyworld_two_subjects") and path.parent.name == "nested_attention"
    assert image.std() > 2.0, "the image is (nearly) constant"

    base = harness.set_inputs(harness.bypass(prompt, "ApplyNestedAttention"), "SaveImage",
                              filename_prefix="nested_attention/toyworld_no_subjects")
    assert not harness.nodes_of(base, "ApplyNestedAttention")
    base = {i: node for i, node in base.items() if node["class_type"] not in ("NestedAttentionPreview", "PreviewImage")}
    base_path, base_image = saved_pixels(server.run(base, timeout=300), base)
    assert harness.image_difference(path, base_path) > 1.0  # mean 8-bit levels
    assert not np.array_equal(image, base_image)


def mask_pixels(path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L"), np.float32)


def test_the_preview_shows_each_subject_in_its_own_region(server, server_harness):
    """The toy workflow's Preview node: one panel per subject; the person's map lies in the person's
    region (the left half, the workflow's first MaskComposite) and the dog's in the dog's (right half)."""
    harness = server_harness
    prompt = harness.ui_to_api(harness.load_workflow(WORKFLOW), server.object_info())
    (preview,) = harness.nodes_of(prompt, "NestedAttentionPreview")
    (viewer,) = harness.nodes_of(prompt, "PreviewImage")
    assert prompt[viewer]["inputs"]["images"] == [preview, 0]
    regions = [prompt[i]["inputs"]["x"] for i in harness.nodes_of(prompt, "MaskComposite")]
    assert regions == [0, SIZE // 2]  # person: left half, dog: right half
    for slot, name in ((0, "maps"), (1, "attention"), (2, "change")):
        source = [preview, slot]
        if slot:
            prompt[f"90{slot}"] = {"class_type": "MaskToImage", "inputs": {"mask": source}}
            source = [f"90{slot}", 0]
        prompt[f"91{slot}"] = {"class_type": "SaveImage", "inputs": {"images": source,
                                                                    "filename_prefix": f"na_preview_{name}"}}
    run = server.run(prompt, timeout=300)
    by_kind = {name: sorted(p for p in run.images if p.name.startswith(f"na_preview_{name}"))
               for name in ("maps", "attention", "change")}
    assert all(len(paths) == 2 for paths in by_kind.values()), run.outputs  # person, dog (the subjects' order)

    panels = [mask_pixels(p) for p in by_kind["maps"]]
    assert panels[0].shape == panels[1].shape and panels[0].shape[0] > 3 * SIZE
    assert harness.image_difference(*by_kind["maps"]) > 1.0  # the two subjects' panels differ

    person, dog = (mask_pixels(p) for p in by_kind["change"])
    left = slice(0, SIZE // 2)
    assert person[:, left].sum() / person.sum() > 0.8, "the person's map is not mostly in the left half"
    assert dog[:, left].sum() / dog.sum() < 0.2, "the dog's map is not mostly in the right half"
    for attention in (mask_pixels(p) for p in by_kind["attention"]):
        assert attention.std() > 1.0 and attention.max() == 255  # a real map, scaled to 0..1
