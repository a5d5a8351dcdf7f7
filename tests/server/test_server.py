"""The pack in a real headless ComfyUI server: loading, templates, and the example workflows end to end.

One server for the module (harness/server.py), with the tiny random models and weights; the
example workflows for real base models are converted from their UI format with the server's
/object_info, given the tiny model names, 64 px and 2 steps, queued over HTTP, and their saved PNGs
checked on disk; the tests' own two-subject workflow (harness/workflows/) runs as saved.
"""
from pathlib import Path

import pytest
from fixtures import tiny_weights

from harness import server as harness

EXAMPLES = ("sdxl_one_subject", "sdxl_two_subjects", "sd15_region_mask")  # every file in example_workflows/
SIZE = 64


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    models_dir = tiny_models["sd15"].parents[1]
    tiny_weights.write_tiny_weights(models_dir)
    with harness.running_server(tmp_path_factory.mktemp("comfyui_base"), models_dir) as running:
        yield running


def tiny_prompt(server, name: str) -> dict:
    """An example workflow as a prompt for the tiny models, 64 px, 2 steps."""
    return harness.make_tiny(harness.ui_to_api(harness.load_workflow(name), server.object_info()), size=SIZE)


def saved_png(run) -> Path:
    from PIL import Image

    assert len(run.images) == 1, run.outputs
    path = run.images[0]
    assert path.is_absolute() and path.is_file(), path
    with Image.open(path) as image:
        assert (image.format, image.size) == ("PNG", (SIZE, SIZE))
    return path


def traceback_blocks(log: str) -> list[str]:
    """Each 'Traceback ...' block of the log, up to its exception line."""
    blocks, current = [], None
    for line in log.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            current = [line]
            blocks.append(current)
        elif current is not None:
            current.append(line)
            if line and not line.startswith((" ", "\t")) and not line.startswith("During handling"):
                current = None
    return ["\n".join(block) for block in blocks]


# ---- loading -----------------------------------------------------------------------------------

def test_all_nodes_load_without_import_errors(server):
    info = server.object_info()
    missing = [node_id for node_id in harness.PACK_NODE_IDS if node_id not in info]
    assert not missing, f"nodes missing from /object_info: {missing}\n{server.log_tail()}"
    log = server.startup_log()
    import_lines = [line for line in log.splitlines() if harness.PACK_DIR_NAME in line]
    assert any("seconds" in line for line in import_lines), "the pack's import time line is missing from the log"
    assert not [line for line in import_lines if "IMPORT FAILED" in line or "Cannot import" in line], import_lines
    ours = [block for block in traceback_blocks(log)
            if harness.PACK_DIR_NAME in block or "nested_attention" in block]
    assert not ours, ours[0]


def test_every_input_of_our_nodes_has_a_tooltip(server):
    info = server.object_info()
    untipped = [f"{node_id}.{name}" for node_id in harness.PACK_NODE_IDS
                for section in ("required", "optional")
                for name, spec in info[node_id]["input"].get(section, {}).items()
                if not (len(spec) > 1 and str(spec[1].get("tooltip") or "").strip())]
    assert not untipped
    assert all(info[node_id]["description"].strip() for node_id in harness.PACK_NODE_IDS)


def test_tooltips_speak_to_users_and_name_every_model_family(server):
    info = server.object_info()
    texts = [str(spec[1].get("tooltip")) for node_id in harness.PACK_NODE_IDS
             for section in ("required", "optional") for spec in info[node_id]["input"].get(section, {}).values()]
    texts += [info[node_id]["description"] for node_id in harness.PACK_NODE_IDS]
    assert not [t for t in texts if "(ours)" in t]
    model_tip = info["ApplyNestedAttention"]["input"]["required"]["model"][1]["tooltip"]
    for family in ("SD1.5", "SDXL", "the tests' one-level SD1.5", "the tests' tiny SDXL"):  # built in, test pack's
        assert family in model_tip, model_tip
    assert "toy" not in model_tip.lower(), model_tip  # the toy world's pack is not loaded here


def test_search_words_are_in_the_names_the_frontend_searches(server):
    """The frontend's node search (1.32.9) matches node ids and display names only."""
    info = server.object_info()
    names = " | ".join(info[node_id]["display_name"].lower() for node_id in harness.PACK_NODE_IDS)
    for word in ("nested", "personalize", "subject", "ip-adapter", "reference", "identity", "preview"):
        assert word in names, (word, names)


def test_every_file_input_is_checked_before_the_run(server):
    """Missing weights are refused by POST /prompt (validation), with what the file is, where it goes
    and how to get it; the saved-subject combo of an empty folder says what to do."""
    prompt = harness.substitute(tiny_prompt(server, "sdxl_one_subject"), {"na_test_sdxl_tiny.safetensors": None})
    loader = harness.nodes_of(prompt, "NestedAttentionLoader")[0]
    checkpoint = harness.nodes_of(prompt, "CheckpointLoaderSimple")[0]
    prompt[checkpoint]["inputs"]["ckpt_name"] = "na_test_sdxl_tiny.safetensors"
    prompt[loader]["inputs"]["weights"] = "nested_attention_sdxl.safetensors"
    with pytest.raises(harness.PromptRejected) as caught:
        server.queue(prompt)
    errors = caught.value.response["node_errors"]
    assert list(errors) == [loader], errors
    (error,) = errors[loader]["errors"]
    for needed in ("'nested_attention_sdxl.safetensors' not found", "models/nested_attention/", "training/",
                   "nested-attention-train", "IP-Adapter Plus", "models/ipadapter/"):
        assert needed in error["details"], error
    assert error["extra_info"]["input_name"] == "weights"

    as_saved = harness.ui_to_api(harness.load_workflow("sdxl_one_subject"), server.object_info())
    with pytest.raises(harness.PromptRejected) as caught:  # the template as shipped: the weights are named too
        server.queue(as_saved)
    assert "training/" in caught.value.response["node_errors"][harness.nodes_of(as_saved, "NestedAttentionLoader")[0]][
        "errors"][0]["details"]


def test_load_subject_without_saved_subjects_says_what_to_do(server):
    subjects = server.base_dir / "models" / "nested_attention_subjects"
    assert not subjects.exists() or not any(subjects.iterdir()), "runs before the save test"
    spec = server.object_info(refresh=True)["NestedAttentionLoadSubject"]["input"]["required"]["subject_file"]
    placeholder = "no saved subjects yet: save one with Nested Attention Save Subject"
    assert spec[1]["options"] == [placeholder]
    prompt = tiny_prompt(server, "sdxl_one_subject")
    subject_id = harness.nodes_of(prompt, "NestedAttentionSubject")[0]
    prompt[subject_id] = {"class_type": "NestedAttentionLoadSubject", "inputs": {"subject_file": placeholder}}
    with pytest.raises(harness.PromptRejected) as caught:
        server.queue(prompt)
    assert placeholder in caught.value.response["node_errors"][subject_id]["errors"][0]["details"]


def test_the_frontend_extension_and_a_help_page_per_node_are_served(server):
    """The frontend loads web/*.js and fetches /extensions/<pack>/docs/<node id>.md for node help."""
    assert f"/extensions/{harness.PACK_DIR_NAME}/nested_attention.js" in server.get_json("/extensions")
    for node_id in harness.PACK_NODE_IDS:
        status, body = server.request(f"/extensions/{harness.PACK_DIR_NAME}/docs/{node_id}.md")
        assert status == 200 and body.decode().startswith("# "), node_id
        assert server.object_info()[node_id]["python_module"].startswith(f"custom_nodes.{harness.PACK_DIR_NAME}")


def test_example_workflows_are_listed_and_served(server):
    on_disk = sorted(path.stem for path in (harness.REPO_ROOT / "example_workflows").glob("*.json"))
    assert on_disk == sorted(EXAMPLES)
    templates = server.get_json("/api/workflow_templates")
    assert sorted(templates.get(harness.PACK_DIR_NAME, [])) == sorted(EXAMPLES), templates
    for name in EXAMPLES:
        served = server.get_json(f"/api/workflow_templates/{harness.PACK_DIR_NAME}/{name}.json")
        assert served == harness.load_workflow(name)


# ---- the example workflows -----------------------------------------------------------------------

@pytest.mark.parametrize("name", (*EXAMPLES, harness.TINY_WORKFLOW))
def test_example_workflow_is_a_consistent_ui_workflow(name):
    harness.check_ui_workflow(harness.load_workflow(name))


def test_ui_to_api_maps_widgets_in_input_order(server):
    prompt = harness.ui_to_api(harness.load_workflow("sdxl_one_subject"), server.object_info())
    sampler = prompt[harness.nodes_of(prompt, "KSampler")[0]]["inputs"]
    model_source = sampler.pop("model")
    assert prompt[model_source[0]]["class_type"] == "ApplyNestedAttention" and model_source[1] == 0
    assert {k: v for k, v in sampler.items() if not isinstance(v, list)} == {
        "seed": 42, "steps": 30, "cfg": 6.0, "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 1.0}
    assert prompt[harness.nodes_of(prompt, "LoadImage")[0]]["inputs"] == {"image": "person.png"}
    subject = prompt[harness.nodes_of(prompt, "NestedAttentionSubject")[0]]["inputs"]
    assert subject["word"] == "person" and "mask" not in subject
    assert not harness.nodes_of(prompt, "Note")

    # a Reroute on a link and a PrimitiveNode feeding the seed widget (converted to an input)
    workflow = harness.load_workflow("sdxl_one_subject")
    sampler_node = next(n for n in workflow["nodes"] if n["type"] == "KSampler")
    model_link = next(link for link in workflow["links"] if link[3] == sampler_node["id"] and link[5] == "MODEL")
    workflow["nodes"] += [
        {"id": 90, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 90}],
         "outputs": [{"name": "", "type": "MODEL", "links": [model_link[0]]}]},
        {"id": 91, "type": "PrimitiveNode", "mode": 0, "inputs": [], "widgets_values": [7, "fixed"],
         "outputs": [{"name": "INT", "type": "INT", "links": [91], "widget": {"name": "seed"}}]}]
    workflow["links"] += [[90, model_link[1], model_link[2], 90, 0, "MODEL"], [91, 91, 0, sampler_node["id"], 4, "INT"]]
    model_link[1:3] = [90, 0]
    sampler_node["inputs"].append({"name": "seed", "type": "INT", "link": 91, "widget": {"name": "seed"}})
    rerouted = harness.ui_to_api(workflow, server.object_info())
    assert rerouted[harness.nodes_of(rerouted, "KSampler")[0]]["inputs"]["seed"] == 7
    assert rerouted[harness.nodes_of(rerouted, "KSampler")[0]]["inputs"]["model"] == model_source
    assert set(rerouted) == set(prompt)

    # widgets_values that do not fit the server's inputs are an error naming the node
    for values, match in (([42, "fixed", 30, 6.0, "dpmpp_2m", "karras", 1.0, "surplus"], "left over"),
                          (["fixed", 42, 30, 6.0, "dpmpp_2m", "karras", 1.0], "'seed'"),
                          ([42, 30, 6.0, "dpmpp_2m", "karras", 1.0], "KSampler")):
        workflow = harness.load_workflow("sdxl_one_subject")
        next(n for n in workflow["nodes"] if n["type"] == "KSampler")["widgets_values"] = values
        with pytest.raises(ValueError, match=match):
            harness.ui_to_api(workflow, server.object_info())


def test_bypass_reads_through_chained_nodes(server):
    prompt = harness.ui_to_api(harness.load_workflow("sdxl_two_subjects"), server.object_info())
    base = harness.bypass(prompt, "ApplyNestedAttention")
    checkpoint, sampler = harness.nodes_of(prompt, "CheckpointLoaderSimple")[0], harness.nodes_of(prompt, "KSampler")[0]
    assert base[sampler]["inputs"]["model"] == [checkpoint, 0]
    assert set(prompt) - set(base) == set(harness.nodes_of(prompt, "ApplyNestedAttention"))
    assert all(base[i] == prompt[i] for i in base if i != sampler)
    with pytest.raises(ValueError, match="no ApplyNestedAttention"):
        harness.bypass(base, "ApplyNestedAttention")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_runs_to_a_saved_png(server, name):
    prompt = tiny_prompt(server, name)
    assert not any(v in harness.TINY_NAMES for node in prompt.values() for v in node["inputs"].values()
                   if isinstance(v, str)), "a real model or image name is left in the prompt"
    saved_png(server.run(prompt))


def test_the_reference_image_changes_the_output(server):
    prompt = tiny_prompt(server, "sdxl_one_subject")
    person = saved_png(server.run(harness.set_inputs(prompt, "SaveImage", filename_prefix="na_ref_person")))
    as_dog = harness.substitute(prompt, {harness.REFERENCE_IMAGES["person"]: harness.REFERENCE_IMAGES["dog"]})
    dog = saved_png(server.run(harness.set_inputs(as_dog, "SaveImage", filename_prefix="na_ref_dog")))
    assert harness.image_difference(person, dog) > 1.0  # mean 8-bit levels


def test_a_subject_word_missing_from_the_prompt_is_an_execution_error(server):
    prompt = harness.set_inputs(tiny_prompt(server, "sdxl_one_subject"), "NestedAttentionTextEncode",
                                text="a photo of a cat on the beach")
    with pytest.raises(harness.WorkflowError) as caught:
        server.run(prompt)
    message = caught.value.exception_message
    assert "'person'" in message and "a photo of a cat on the beach" in message, message
    assert caught.value.exception_type.endswith("SubjectWordError")
    # the sampler is the only node that sees both the prompt and the subjects; the message names the
    # Apply node (by the number the frontend shows) whose word is missing
    apply_id = harness.nodes_of(prompt, "ApplyNestedAttention")[0]
    assert f"Apply Nested Attention node #{apply_id}" in message, message


@pytest.mark.parametrize("name, value", [("weight", 10.0), ("weight", -3.0), ("weight", float("inf")),
                                         ("weight", 1.7976931348623157e308), ("end_at", 1.5)])
def test_out_of_range_numbers_are_reported_on_the_apply_node(server, name, value):
    """1.79e308: what the browser sends for 1e999 typed in the widget (web/nested_attention.js bounds
    the widget by the largest finite number, which JSON can carry)."""
    prompt = tiny_prompt(server, "sdxl_one_subject")
    apply_id = harness.nodes_of(prompt, "ApplyNestedAttention")[0]
    with pytest.raises(harness.PromptRejected) as caught:
        server.queue(harness.set_inputs(prompt, "ApplyNestedAttention", **{name: value}))
    errors = caught.value.response["node_errors"]
    assert list(errors) == [apply_id], errors
    text = " ".join(f"{e.get('message')} {e.get('details')}" for e in errors[apply_id]["errors"])
    assert name in text and ("type a value from 0 to 5" in text if name == "weight" else "max of 1" in text), text


def test_save_subject_writes_again_when_its_file_was_deleted(server):
    """A rerun with nothing changed reuses the result while the file is there; once it is deleted, the
    rerun writes the subject again instead of naming the missing file."""
    prompt = tiny_prompt(server, "sdxl_one_subject")
    subject_id = harness.nodes_of(prompt, "NestedAttentionSubject")[0]
    save = {i: node for i, node in prompt.items() if node["class_type"] != "SaveImage"}
    save["901"] = {"class_type": "NestedAttentionSaveSubject",
                   "inputs": {"subject": [subject_id, 0], "filename_prefix": "na_rerun"}}
    folder = server.base_dir / "models" / "nested_attention_subjects"
    first = server.run(save).outputs["901"]["text"][0]
    written = sorted(folder.glob("na_rerun*"))
    assert written == [folder / first]
    assert server.run(save).outputs["901"]["text"][0] == first  # reused: the same name, nothing written
    assert sorted(folder.glob("na_rerun*")) == written
    (folder / first).unlink()
    again = server.run(save).outputs["901"]["text"][0]
    assert sorted(folder.glob("na_rerun*")) == [folder / again]  # written again (the counter may reuse the name)
    assert server.run(save).outputs["901"]["text"][0] == again  # and reused from then on
    assert sorted(folder.glob("na_rerun*")) == [folder / again]


def test_save_subject_then_load_subject_round_trips(server):
    prompt = tiny_prompt(server, "sdxl_one_subject")
    subject_id = harness.nodes_of(prompt, "NestedAttentionSubject")[0]

    save = {i: node for i, node in prompt.items() if node["class_type"] != "SaveImage"}
    save["900"] = {"class_type": "NestedAttentionSaveSubject",
                   "inputs": {"subject": [subject_id, 0], "filename_prefix": "na_roundtrip"}}
    saved = server.run(save).outputs["900"]["text"][0]  # shown on the node by web/nested_attention.js
    assert (server.base_dir / "models" / "nested_attention_subjects" / saved).is_file()
    options = server.object_info(refresh=True)["NestedAttentionLoadSubject"]["input"]["required"]["subject_file"]
    assert saved in options[1]["options"]

    loaded = harness.set_inputs(prompt, "SaveImage", filename_prefix="na_loaded_subject")
    loaded[subject_id] = {"class_type": "NestedAttentionLoadSubject", "inputs": {"subject_file": saved}}
    for unused in ("NestedAttentionLoader", "CLIPVisionLoader", "LoadImage"):
        for node_id in harness.nodes_of(loaded, unused):
            del loaded[node_id]
    from_file = saved_png(server.run(loaded))
    direct = saved_png(server.run(harness.set_inputs(prompt, "SaveImage", filename_prefix="na_direct_subject")))
    assert harness.image_difference(from_file, direct) == 0.0


def test_the_tests_two_subject_workflow_runs_as_saved(server):
    """The browser test's workflow (harness/workflows/), unchanged: tiny SD1.5, two subjects, preview."""
    prompt = harness.ui_to_api(harness.load_workflow(harness.TINY_WORKFLOW), server.object_info())
    assert len(harness.nodes_of(prompt, "ApplyNestedAttention")) == 2
    run = server.run(prompt, timeout=300)
    (save,) = harness.nodes_of(prompt, "SaveImage")
    (image,) = run.outputs[save]["images"]
    path = server.output_dir / image["subfolder"] / image["filename"]
    assert path.name.startswith("tiny_two_subjects") and path.parent.name == "nested_attention"
    from PIL import Image

    with Image.open(path) as saved:
        assert (saved.format, saved.size) == ("PNG", (SIZE, SIZE))
