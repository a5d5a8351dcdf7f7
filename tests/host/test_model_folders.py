"""The pack's model folders exist after ComfyUI starts the pack, in an empty models/ folder."""
import asyncio
from concurrent.futures import ThreadPoolExecutor


def test_starting_the_pack_creates_its_model_folders(comfy_root, tmp_path, monkeypatch):
    import folder_paths

    from nested_attention.nodes.extension import NestedAttentionExtension

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setattr(folder_paths, "models_dir", str(models))
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", dict(folder_paths.folder_names_and_paths))
    for name in ("nested_attention", "ipadapter", "nested_attention_subjects"):
        folder_paths.folder_names_and_paths.pop(name, None)
    # what ComfyUI calls when it loads the pack; in a thread of its own, as the browser tests' event loop
    # may still run in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, NestedAttentionExtension().get_node_list()).result()
    assert sorted(p.name for p in models.iterdir()) == ["ipadapter", "nested_attention", "nested_attention_subjects"]
    assert folder_paths.get_folder_paths("nested_attention_subjects") == [str(models / "nested_attention_subjects")]
