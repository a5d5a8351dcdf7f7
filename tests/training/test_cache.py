"""The feature cache checks every entry it reads against its checksum: damage or a swapped file is recomputed."""
from __future__ import annotations

import logging
import shutil

import torch
from fixtures.encoders import FakeEncoders


def _store(root, encoders):
    from nested_attention.training.cache import FeatureCache
    from nested_attention.training.features import FeatureStore

    return FeatureStore(encoders, FeatureCache(root), "ckpt-1", "vision-1", 64)  # no memory: every read is a file


def _entry(root, kind, *parts):
    from nested_attention.training.cache import FeatureCache, feature_key

    return FeatureCache(root)._path(kind, feature_key(kind, *parts))


def test_finite_garbage_behind_a_valid_header_is_recomputed_and_rewritten(training, helpers, tmp_path, caplog):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from nested_attention.training.data import scan_data_folder

    data = scan_data_folder(helpers.make_data(tmp_path / "data", {"a": 1}), lambda text, word: word in text,
                            default_word="person")
    image, root, encoders = data.images[0], tmp_path / "cache", FakeEncoders()
    good = _store(root, encoders).latent(image).latent
    path = _entry(root, "latent", "ckpt-1", image.digest, image.mask_digest, 64)
    with safe_open(str(path), framework="pt") as f:  # same names, shapes, dtype and metadata; other numbers
        metadata, stored = f.metadata(), f.get_tensor("latent")
    save_file({"latent": torch.full_like(stored, 0.25)}, str(path), metadata=metadata)

    caplog.set_level(logging.WARNING, logger="nested_attention.training")
    again = _store(root, encoders).latent(image).latent
    assert torch.equal(again, good) and encoders.calls["vae"] == 2
    assert str(path) in caplog.text and "computing it again" in caplog.text
    caplog.clear()
    assert torch.equal(_store(root, encoders).latent(image).latent, good)  # rewritten: read, not recomputed
    assert encoders.calls["vae"] == 2 and not caplog.text


def test_another_entrys_file_copied_over_is_not_used(training, tmp_path, caplog):
    root, encoders = tmp_path / "cache", FakeEncoders()
    store = _store(root, encoders)
    person, dog = store.text("a photo of a person"), store.text("a dog")
    shutil.copyfile(_entry(root, "text", "ckpt-1", "a dog"), _entry(root, "text", "ckpt-1", "a photo of a person"))

    caplog.set_level(logging.WARNING, logger="nested_attention.training")
    read = _store(root, encoders).text("a photo of a person")
    assert torch.equal(read.cond, person.cond) and read.words == person.words and not torch.equal(read.cond, dog.cond)
    assert encoders.calls["text"] == 3 and "a photo of a person" not in caplog.text  # the file is named, not the text
    assert str(_entry(root, "text", "ckpt-1", "a photo of a person")) in caplog.text
