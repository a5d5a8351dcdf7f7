"""The data folder: bad data and its messages, references, masks, and the feature cache's keys."""
from __future__ import annotations

import random
import re
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from fixtures.encoders import FakeEncoders


@pytest.fixture
def has_word(training, sdxl_models):
    """Word matching by the host tokenizer, as the trainer does it."""
    from nested_attention.training.session import word_matcher

    return word_matcher(sdxl_models.clip)


def scan(folder, has_word, **kwargs):
    from nested_attention.training.data import scan_data_folder

    return scan_data_folder(folder, has_word, **kwargs)


def test_unreadable_images_are_skipped_and_counted(helpers, tmp_path, has_word):
    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 1})
    (data / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (data / "b" / "empty.png").write_bytes(b"")
    found = scan(data, has_word, default_word="person")
    assert len(found) == 3 and len(found.subjects) == 2
    summary = found.summary()
    assert summary["skipped_unreadable"] == 2
    assert sorted(p.rsplit("/", 1)[1] for p in summary["unreadable_files"]) == ["broken.jpg", "empty.png"]


def test_a_caption_without_the_word_is_an_error_naming_the_file_or_skipped(helpers, tmp_path, has_word):
    from nested_attention.training.errors import TrainingDataError

    data = helpers.make_data(tmp_path / "data", {"rex": 3}, words={"rex": "dog"})
    (data / "rex" / "001.txt").write_text("a photo of a sksdog")  # "sksdog" is not the word "dog"
    with pytest.raises(TrainingDataError, match=r"caption .*rex/001\.txt does not contain the subject word 'dog': "
                                                r"'a photo of a sksdog'; fix the caption, or pass --skip-unusable-images"):
        scan(data, has_word, words_file=data / "subjects.json")
    found = scan(data, has_word, words_file=data / "subjects.json", skip_unusable=True)
    assert [i.path.name for i in found.images] == ["000.png", "002.png"]
    assert found.summary()["skipped_bad_captions"] == 1 and "sksdog" in found.bad_captions[0].reason
    (data / "rex" / "001.txt").write_text("a dog")
    (data / "rex" / "002.txt").unlink()
    with pytest.raises(TrainingDataError, match=r"image .*rex/002\.png has no caption file 002\.txt"):
        scan(data, has_word, words_file=data / "subjects.json")


def test_empty_or_missing_data_folders_say_what_is_expected(tmp_path, has_word, helpers):
    from nested_attention.training.errors import TrainingDataError

    with pytest.raises(TrainingDataError, match=r"data folder .*nowhere does not exist .* one sub-folder per subject"):
        scan(tmp_path / "nowhere", has_word)
    (tmp_path / "empty" / "alice").mkdir(parents=True)
    with pytest.raises(TrainingDataError, match=r"data folder .*empty has no usable training images: expected one "
                                                r"sub-folder per subject"):
        scan(tmp_path / "empty", has_word, default_word="person")
    flat = tmp_path / "flat"
    flat.mkdir()
    helpers.draw_image(flat / "me.png", 0)
    with pytest.raises(TrainingDataError, match=r"images directly in .*flat \(me\.png\) are not used: move them into a "
                                                r"subject folder"):
        scan(flat, has_word, default_word="person")
    only_broken = tmp_path / "broken"
    (only_broken / "a").mkdir(parents=True)
    (only_broken / "a" / "x.png").write_bytes(b"nope")
    with pytest.raises(TrainingDataError, match=r"no usable training images \(1 image\(s\) skipped"):
        scan(only_broken, has_word, default_word="person")


def test_subject_words_come_from_subjects_json_or_the_default(helpers, tmp_path, has_word):
    from nested_attention.training.errors import TrainingDataError

    data = helpers.make_data(tmp_path / "data", {"alice": 1, "rex": 1}, words={"rex": "dog"})
    with pytest.raises(TrainingDataError, match=r"subject folder .*alice has no word \(.*subjects\.json has no entry "
                                                r"for it\): add \"alice\": \"<word>\" to subjects.json, or pass "
                                                r"--default-word"):
        scan(data, has_word, words_file=data / "subjects.json")
    found = scan(data, has_word, words_file=data / "subjects.json", default_word="Person")
    assert {i.subject: i.word for i in found.images} == {"alice": "person", "rex": "dog"}
    (data / "subjects.json").write_text("{not json")
    with pytest.raises(TrainingDataError, match=r"subjects\.json is not valid JSON"):
        scan(data, has_word, words_file=data / "subjects.json")


def test_references_are_other_images_or_augmented_crops_of_a_single_image(helpers, tmp_path, has_word):
    from nested_attention.training.data import choose_reference, reference_pixels

    data = scan(helpers.make_data(tmp_path / "data", {"many": 3, "one": 1}), has_word, default_word="person")
    rng = random.Random(0)
    many = [choose_reference(data, 0, rng, "other", 4) for _ in range(20)]
    assert {r.image for r in many} == {1, 2} and all(r.view is None for r in many)
    single = [choose_reference(data, 3, rng, "other", 4) for _ in range(20)]
    assert {r.image for r in single} == {3} and {r.view for r in single} == {0, 1, 2, 3}
    assert choose_reference(data, 0, rng, "self", 4).image == 0
    crop = reference_pixels(data.images[3], 1)
    assert torch.equal(crop, reference_pixels(data.images[3], 1))  # deterministic
    assert crop.shape[1] == crop.shape[2] and crop.shape[1] < 64  # a square crop of the 72x64 image
    assert not torch.equal(crop, reference_pixels(data.images[3], 2))


def test_masks_blank_the_reference_background_and_weight_the_loss(training, sdxl_models, helpers, tiny_models,
                                                                  tmp_path):
    from nested_attention.training.batch import RowPlan, assemble
    from nested_attention.training.data import ReferenceChoice, reference_pixels, target_mask
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    (data / "a" / "masks").mkdir()
    mask = np.zeros((32, 36), dtype=np.uint8)  # another size than the 72x64 image: resized
    mask[:, :18] = 255  # subject = left half
    Image.fromarray(mask).save(data / "a" / "masks" / "000.png")
    session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out", background_loss_weight=0.25,
                                               cache=False), models=sdxl_models)
    image = session.data.images[0]
    assert image.mask_path is not None and session.data.images[1].mask_path is None
    reference = reference_pixels(image, None)
    assert torch.all(reference[0, :, 40:] == 1.0)  # right half blanked to white
    assert target_mask(image, 64).shape == (1, 64, 64)
    den = session.denoiser
    plans = [RowPlan(i, 0, i, ReferenceChoice(i, None), "none") for i in (0, 1)]
    batch = assemble(session.store, session.data, plans, den.model_sampling, den.process_latent_in, 0,
                     background_loss_weight=0.25)
    assert batch.weight.shape == (2, 1, 8, 8)
    assert batch.weight[0, 0, :, 0].eq(1).all() and batch.weight[0, 0, :, -1].eq(0.25).all()
    assert batch.weight[1].eq(1).all()


def test_a_share_of_the_references_is_masked_drawn_last_and_the_same_on_every_run(helpers, tmp_path, has_word):
    from nested_attention.training.data import choose_reference

    data = scan(helpers.make_data(tmp_path / "data", {"many": 3, "one": 1}), has_word, default_word="person")

    def draws(share, index):
        rng = random.Random(7)
        return [choose_reference(data, index, rng, "other", 4, share) for _ in range(400)]

    for index in (0, 3):  # another image of the subject; an augmented crop of a single image
        always, never, half = draws(1.0, index), draws(0.0, index), draws(0.5, index)
        assert all(r.masked for r in always) and not any(r.masked for r in never)
        assert 0.4 < sum(r.masked for r in half) / len(half) < 0.6
        # the mask is drawn last: which image and crop is chosen does not depend on the share
        assert [(r.image, r.view) for r in half] == [(r.image, r.view) for r in always]
        assert half == draws(0.5, index)


def test_a_masked_and_a_whole_reference_are_two_cache_entries_only_when_there_is_a_mask(helpers, tmp_path, has_word):
    from nested_attention.training.cache import FeatureCache
    from nested_attention.training.data import reference_pixels
    from nested_attention.training.features import FeatureStore

    folder = helpers.make_data(tmp_path / "data", {"a": 2})
    (folder / "a" / "masks").mkdir()
    mask = np.zeros((64, 72), dtype=np.uint8)
    mask[:, :36] = 255  # subject = left half
    Image.fromarray(mask).save(folder / "a" / "masks" / "000.png")
    data = scan(folder, has_word, default_word="person")
    masked_image, plain_image = data.images
    whole, masked = reference_pixels(masked_image, None, masked=False), reference_pixels(masked_image, None)
    assert torch.all(masked[0, :, 40:] == 1.0) and not torch.all(whole[0, :, 40:] == 1.0)
    assert torch.equal(whole[0, :, :30], masked[0, :, :30])  # the subject is the same pixels

    encoders = FakeEncoders()
    store = FeatureStore(encoders, FeatureCache(tmp_path / "cache"), "ckpt", "vision", 64)
    assert not torch.equal(store.reference(masked_image, None, True), store.reference(masked_image, None, False))
    assert encoders.calls["clip_vision"] == 2
    store.reference(plain_image, None, True), store.reference(plain_image, None, False)
    assert encoders.calls["clip_vision"] == 3  # no mask: masked or not, one entry


def test_cache_keys_follow_the_content(training, helpers, tmp_path, has_word):
    """A changed image, caption or model file is a new key; an unchanged one is read back."""
    from nested_attention.training.cache import FeatureCache, file_identity
    from nested_attention.training.features import FeatureStore

    data = scan(helpers.make_data(tmp_path / "data", {"a": 2}), has_word, default_word="person")
    encoders, cache = FakeEncoders(), FeatureCache(tmp_path / "cache")
    store = FeatureStore(encoders, cache, "ckpt-1", "vision-1", 64)
    first = store.latent(data.images[0]).latent
    store.latent(data.images[0]), store.text("a person"), store.text("a person"), store.reference(data.images[0], 1)
    store.reference(data.images[0], 1)
    assert encoders.calls == Counter(vae=1, text=1, clip_vision=1)
    store.reference(data.images[0], 2), store.text("a person!")
    assert encoders.calls == Counter(vae=1, text=2, clip_vision=2)
    helpers.draw_image(data.images[0].path, 99)  # the image changes on disk: rescanned, it is a new key
    changed = scan(data.root, has_word, default_word="person").images[0]
    assert not torch.equal(store.latent(changed).latent, first) and encoders.calls["vae"] == 2
    other_model = FeatureStore(encoders, cache, "ckpt-2", "vision-1", 64)
    other_model.latent(data.images[1]), store.latent(data.images[1])
    assert encoders.calls["vae"] == 4
    assert store.latent(data.images[0]).latent.dtype == torch.float32  # stored as float16, used as float32
    path = tmp_path / "model.bin"
    path.write_bytes(b"x" * 3_000_000)
    before = file_identity(path)
    path.write_bytes(b"x" * 2_999_999 + b"y")
    assert file_identity(path) != before


def _gray_ramp(width=32, height=16):
    return np.linspace(0, 1, width * height).reshape(height, width)


def test_every_image_mode_becomes_the_right_rgb(training, tmp_path):
    """16-bit PNGs (I;16), 32-bit and float images (I, F) used to be clipped to white; alpha goes over white."""
    from nested_attention.training.data import load_mask, load_rgb

    gray = _gray_ramp()
    expected = (gray * 255).round()
    files = {
        "i16.png": Image.fromarray((gray * 65535).round().astype(np.uint16)),  # opens as I;16
        "i32.tif": Image.fromarray((gray * 65535).round().astype(np.int32)),  # I
        "float01.tif": Image.fromarray(gray.astype(np.float32)),  # F in [0, 1]
        "float_range.tif": Image.fromarray((gray * 3000 - 1000).astype(np.float32)),  # F by its range
        "l.png": Image.fromarray(expected.astype(np.uint8)),
        "p.png": Image.fromarray(expected.astype(np.uint8)).convert("P"),
    }
    for name, image in files.items():
        image.save(tmp_path / name)
        rgb = np.asarray(load_rgb(tmp_path / name), dtype=np.float64)
        assert rgb.shape == (16, 32, 3), name
        assert np.abs(rgb - expected[..., None]).max() <= 1, name

    half = np.zeros((16, 32), dtype=np.uint8)
    half[:, 16:] = 255  # left transparent, right opaque
    red = Image.new("RGB", (32, 16), (200, 20, 20))
    transparent = {"rgba.png": Image.merge("RGBA", (*red.split(), Image.fromarray(half))),
                   "la.png": Image.merge("LA", (Image.new("L", (32, 16), 40), Image.fromarray(half)))}
    for name, image in transparent.items():
        image.save(tmp_path / name)
        rgb = np.asarray(load_rgb(tmp_path / name))
        assert (rgb[:, :16] == 255).all(), name  # composited over white
        assert (rgb[:, 16:] == (200, 20, 20) if name == "rgba.png" else rgb[:, 16:] == 40).all(), name
    Image.new("CMYK", (32, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    r, g, b = np.asarray(load_rgb(tmp_path / "cmyk.jpg"), dtype=np.float64).mean((0, 1))
    assert r > 200 and g < 60 and b < 60  # red
    Image.fromarray(half > 0).save(tmp_path / "bits.png")  # mode 1
    assert (np.asarray(load_rgb(tmp_path / "bits.png"))[:, :16] == 0).all()

    mask16 = (half.astype(np.uint16) * 257)  # a 16-bit mask: left background, right subject
    Image.fromarray(mask16).save(tmp_path / "mask16.png")
    mask = np.asarray(load_mask(tmp_path / "mask16.png", (32, 16)))
    assert (mask[:, :16] == 0).all() and (mask[:, 16:] == 255).all()


def test_too_small_images_are_refused_or_skipped_and_subjects_are_reported(helpers, tmp_path, has_word, caplog):
    """A 1x1 image as a subject's only image crashed in the reference crop; an empty subject folder was ignored
    silently; a single image trained on augmented crops of itself without a word about it."""
    import logging

    from nested_attention.training.errors import TrainingDataError

    data = helpers.make_data(tmp_path / "data", {"many": 2, "single": 1, "tiny": 1})
    Image.new("RGB", (1, 1), (10, 20, 30)).save(data / "tiny" / "000.png")
    (data / "empty").mkdir()
    with pytest.raises(TrainingDataError, match=r"image .*tiny/000\.png is 1x1 pixels, below the minimum of 16 "
                                                r"pixels on the shorter side; .*pass --skip-unusable-images"):
        scan(data, has_word, default_word="person")

    caplog.set_level(logging.INFO, logger="nested_attention.training")
    found = scan(data, has_word, default_word="person", skip_unusable=True)
    assert sorted(found.subjects) == ["many", "single"]
    assert found.summary()["skipped_too_small"] == 1 and found.summary()["subject_images"] == {"many": 2, "single": 1}
    assert re.search(r"subject folder .*/empty has no images .*not trained on", caplog.text), caplog.text
    assert re.search(r"subject folder .*/tiny has no usable images \(1 skipped.*not trained on", caplog.text)
    caplog.clear()
    from nested_attention.training.data import describe_subjects

    describe_subjects(found, "other", 4)
    assert re.search(r"subject many \(word 'person'\): 2 images; references: its other images", caplog.text)
    assert re.search(r"subject single \(word 'person'\): 1 image; references: 4 augmented crops of that image",
                     caplog.text)
