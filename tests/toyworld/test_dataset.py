"""The training-folder writer: layout, captions, masks, words files, manifest; and the trainer reads it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nested_attention.toyworld.dataset import MANIFEST_FILE, iter_renders, make_samples, render_array, write_training_folder
from nested_attention.toyworld.errors import DatasetError
from nested_attention.toyworld.identity import HELDOUT_START, sample_identity
from nested_attention.toyworld.render import render
from nested_attention.toyworld.scene import caption

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "data"
    return write_training_folder(root, ["person", "pet"], [0, 1], 3, seed=4)


def test_the_folder_has_one_subfolder_per_identity_with_images_captions_and_masks(folder):
    subjects = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert subjects == ["person_0000", "person_0001", "pet_0000", "pet_0001"]
    for subject in subjects:
        files = sorted(p.name for p in (folder / subject).iterdir())
        assert files == ["000.png", "000.txt", "001.png", "001.txt", "002.png", "002.txt", "masks"]
        assert sorted(p.name for p in (folder / subject / "masks").iterdir()) == ["000.png", "001.png", "002.png"]
        image, mask = Image.open(folder / subject / "001.png"), Image.open(folder / subject / "masks" / "001.png")
        assert image.size == mask.size == (64, 64) and image.mode == "RGB" and mask.mode == "L"
        word = "person" if subject.startswith("person") else "dog"
        assert word in (folder / subject / "000.txt").read_text().replace(",", " ").split()  # the class word, a word


def test_words_files_map_every_subject_to_its_class_word(folder):
    expected = {"person_0000": "person", "person_0001": "person", "pet_0000": "dog", "pet_0001": "dog"}
    for name in ("subjects.json", "words.json"):
        assert json.loads((folder / name).read_text()) == expected


def test_the_manifest_says_what_each_image_shows(folder):
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["seed"] == 4 and len(manifest["images"]) == 12
    entry = manifest["images"][4]
    from nested_attention.toyworld.scene import Scene

    scene = Scene(**entry["scene"])
    identity = sample_identity(entry["domain"], entry["identity_id"])
    redrawn = render(identity, scene, entry["variation_seed"])
    assert redrawn.tobytes() == Image.open(folder / entry["file"]).convert("RGB").tobytes()  # PNG is lossless
    assert (folder / entry["file"]).with_suffix(".txt").read_text().strip() == caption(entry["domain"], scene)
    from nested_attention.toyworld.look import LOOK_FACTORS, realised_look

    for item in manifest["images"]:  # each image names only its own domain's look, and records what it shows
        scene = Scene(**item["scene"])
        assert scene == scene.for_domain(item["domain"])
        assert item["look"] == realised_look(item["domain"], scene, item["variation_seed"],
                                             f"{item['domain']}_{item['identity_id']:04d}")
        assert set(item["look"]) == set(LOOK_FACTORS[item["domain"]])


def test_the_trainer_reads_the_folder(folder):
    """The repository's trainer (training/data.py, imported without ComfyUI) accepts the folder."""
    from nested_attention.training.data import scan_data_folder

    data = scan_data_folder(folder, lambda text, word: word in text.replace(",", " ").split(),
                            words_file=folder / "subjects.json")
    assert len(data) == 12 and not data.unreadable and not data.bad_captions
    assert data.words() == ["dog", "person"]
    assert all(image.mask_path is not None for image in data.images)


def test_held_out_identities_and_non_empty_folders_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="held out"):
        write_training_folder(tmp_path / "a", ["person"], [HELDOUT_START], 1)
    write_training_folder(tmp_path / "b", ["pet"], [HELDOUT_START], 1, allow_heldout=True, masks=False)
    assert not (tmp_path / "b" / f"pet_{HELDOUT_START}" / "masks").exists()
    with pytest.raises(DatasetError, match="not empty"):
        write_training_folder(tmp_path / "b", ["pet"], [0], 1)


def test_samples_are_deterministic_and_render_in_memory():
    samples = make_samples(["person", "pet"], range(3), 2, seed=1)
    assert samples == make_samples(["person", "pet"], range(3), 2, seed=1)
    assert samples != make_samples(["person", "pet"], range(3), 2, seed=2)
    assert len(samples) == 12 and len({s.variation_seed for s in samples}) == 12
    array = render_array(samples[:3])
    assert array.shape == (3, 64, 64, 3) and array.dtype == np.uint8
    sample, image = next(iter_renders(samples[:1]))
    assert sample == samples[0] and np.array_equal(image, array[0])
    with pytest.raises(DatasetError):
        make_samples(["person"], [], 2, seed=0)
