"""The pack's model folders exist after ComfyUI starts the pack, in an empty models/ folder."""
from fixtures.pack import pack_node_list


def test_starting_the_pack_creates_its_model_folders(comfy_root, tmp_path, monkeypatch):
    import folder_paths

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setattr(folder_paths, "models_dir", str(models))
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", dict(folder_paths.folder_names_and_paths))
    for name in ("nested_attention", "ipadapter", "nested_attention_subjects"):
        folder_paths.folder_names_and_paths.pop(name, None)
    pack_node_list()  # what ComfyUI calls when it loads the pack
    assert sorted(p.name for p in models.iterdir()) == ["ipadapter", "nested_attention", "nested_attention_subjects"]
    assert folder_paths.get_folder_paths("nested_attention_subjects") == [str(models / "nested_attention_subjects")]
