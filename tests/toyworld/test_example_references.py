"""The toy workflow's committed reference PNGs are exactly what the toy world renders for them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from nested_attention.toyworld.evaluation import reference_render
from nested_attention.toyworld.example_references import DEFAULT_FOLDER, REFERENCES, render_references, write_references
from nested_attention.toyworld.identity import HELDOUT_START, PERSON, PET

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = REPO_ROOT / "toyworld" / "workflows" / "toyworld_two_subjects.json"


def test_committed_references_equal_a_fresh_render():
    # Pixels, not PNG bytes: the zlib stream may change with the Pillow build, the image may not.
    for name, fresh in render_references().items():
        with Image.open(DEFAULT_FOLDER / name) as committed:
            assert (committed.format, committed.mode, committed.size) == ("PNG", "RGB", (64, 64)), name
            assert np.array_equal(np.asarray(committed), np.asarray(fresh)), (
                f"{DEFAULT_FOLDER / name} is not the toy world's render: run `python -m toyworld.example_references`")


def test_references_are_held_out_identities_of_both_domains():
    assert {domain for domain, _ in REFERENCES.values()} == {PERSON, PET}
    assert all(identity_id >= HELDOUT_START for _, identity_id in REFERENCES.values())
    person, dog = (np.asarray(image) for image in render_references().values())
    assert np.array_equal(person, reference_render(PERSON, 1800)) and np.array_equal(dog, reference_render(PET, 1800))
    assert np.abs(person.astype(int) - dog.astype(int)).mean() > 10


def test_write_references_writes_what_the_workflow_loads(tmp_path):
    paths = write_references(tmp_path)
    assert sorted(path.name for path in paths) == sorted(REFERENCES)
    loaded = {node["widgets_values"][0] for node in json.loads(WORKFLOW.read_text())["nodes"]
              if node["type"] == "LoadImage"}
    assert loaded == set(REFERENCES)


def test_the_workflow_asks_what_the_evaluation_asks():
    """Prompt, words, size and sampler of the toy workflow are those of evaluation.two_subjects."""
    from nested_attention.toyworld.evaluation import TWO_SUBJECT_SCENES
    from nested_attention.toyworld.generation import SamplerSettings
    from nested_attention.toyworld.identity import CLASS_WORDS
    from nested_attention.toyworld.scene import caption_two

    nodes = json.loads(WORKFLOW.read_text())["nodes"]
    values = {}
    for node in nodes:
        values.setdefault(node["type"], []).append(node["widgets_values"])
    assert values["NestedAttentionTextEncode"] == [[caption_two(TWO_SUBJECT_SCENES[0], "left")]]
    assert values["CLIPTextEncode"] == [[""]]
    assert sorted(v[0] for v in values["NestedAttentionSubject"]) == sorted(CLASS_WORDS.values())
    assert values["EmptyLatentImage"] == [[64, 64, 1]]
    settings = SamplerSettings()
    (seed, control, steps, cfg, sampler, scheduler, denoise), = values["KSampler"]
    assert (control, steps, cfg, sampler, scheduler, denoise) == (
        "fixed", settings.steps, settings.cfg, settings.sampler, settings.scheduler, 1.0)


def test_the_workflow_regions_are_the_evaluation_halves():
    """Each subject's attn_mask, built by SolidMask + MaskComposite add, is its evaluation region."""
    from nested_attention.toyworld.evaluation import region_masks

    workflow = json.loads(WORKFLOW.read_text())
    nodes = {node["id"]: node for node in workflow["nodes"]}
    source = {(link[3], link[4]): link[1] for link in workflow["links"]}  # (to node, slot) -> from node

    def mask(node_id):  # stock semantics: SolidMask [value, w, h]; MaskComposite [x, y, "add"] clamped to 0..1
        node = nodes[node_id]
        if node["type"] == "SolidMask":
            value, width, height = node["widgets_values"]
            return np.full((height, width), value, np.float32)
        x, y, operation = node["widgets_values"]
        assert node["type"] == "MaskComposite" and operation == "add"
        out, add = mask(source[(node_id, 0)]).copy(), mask(source[(node_id, 1)])
        h, w = add[: out.shape[0] - y, : out.shape[1] - x].shape
        out[y:y + h, x:x + w] = np.clip(out[y:y + h, x:x + w] + add[:h, :w], 0, 1)
        return out

    regions = {name: m[0].numpy() for name, m in region_masks(64).items()}
    for node in nodes.values():
        if node["type"] == "ApplyNestedAttention":
            word = nodes[source[(node["id"], 1)]]["widgets_values"][0]
            expected = regions["left" if word == "person" else "right"]
            assert np.array_equal(mask(source[(node["id"], 2)]), expected), word
