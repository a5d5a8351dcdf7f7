"""The toy world's example workflow, unchanged, in a real server on the committed toy-world models.

One server for the module, with ``toyworld/weights/models`` as its models folder, this pack and the
demo/test models pack (``toyworld/comfyui_pack``, which teaches ComfyUI the toy sizes). The
workflow is converted from its UI format and queued as saved: same model and image names, 64 px,
20 steps.
"""
from pathlib import Path

import pytest

WORKFLOW = "toyworld_two_subjects"
SIZE = 64


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_harness):
    with server_harness.running_server(tmp_path_factory.mktemp("comfyui_toy"), server_harness.toy_models_dir()) as running:
        yield running


def saved_pixels(run):
    import numpy as np
    from PIL import Image

    assert len(run.images) == 1, run.outputs
    path = run.images[0]
    assert path.is_absolute() and path.is_file(), path
    with Image.open(path) as image:
        assert (image.format, image.size) == ("PNG", (SIZE, SIZE))
        return path, np.asarray(image.convert("RGB"), np.float32)


def test_the_workflow_names_the_committed_models(server_harness):
    harness = server_harness
    workflow = harness.load_workflow(WORKFLOW)
    loaded = {node["widgets_values"][0] for node in workflow["nodes"]
              if node["type"] in ("CheckpointLoaderSimple", "CLIPVisionLoader", "NestedAttentionLoader")}
    assert loaded == {Path(name).name for name in harness.TOY_MODEL_FILES}


def test_two_subjects_run_unchanged_and_change_the_image(server, server_harness):
    import numpy as np

    harness = server_harness
    prompt = harness.ui_to_api(harness.load_workflow(WORKFLOW), server.object_info())
    assert len(harness.nodes_of(prompt, "ApplyNestedAttention")) == 2
    path, image = saved_pixels(server.run(prompt, timeout=300))
    assert path.name.startswith("toyworld_two_subjects") and path.parent.name == "nested_attention"
    assert image.std() > 2.0, "the image is (nearly) constant"

    base = harness.set_inputs(harness.bypass(prompt, "ApplyNestedAttention"), "SaveImage",
                              filename_prefix="nested_attention/toyworld_no_subjects")
    assert not harness.nodes_of(base, "ApplyNestedAttention")
    base_path, base_image = saved_pixels(server.run(base, timeout=300))
    assert harness.image_difference(path, base_path) > 1.0  # mean 8-bit levels
    assert not np.array_equal(image, base_image)
