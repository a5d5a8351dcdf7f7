"""The reference gap on held-out subjects (training/validation.py), logged during training."""
from __future__ import annotations

import json

import pytest
import torch


def _gap(session, folder):
    from nested_attention.training.validation import ReferenceGap

    return ReferenceGap(session, folder)


def test_right_and_wrong_rows_share_images_noise_and_timesteps(training, sdxl_models, helpers, tiny_models, tmp_path):
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    held = helpers.make_data(tmp_path / "held", {"x": 2, "y": 3, "z": 2}, seed=5)
    session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out"), models=sdxl_models)
    gap = _gap(session, held)
    assert len(gap.right) == len(gap.wrong) == 7
    subject_of = {i: image.subject for i, image in enumerate(gap.data.images)}
    for right, wrong in zip(gap.right, gap.wrong):
        assert right.image == wrong.image and right.position == wrong.position
        assert subject_of[right.reference.image] == subject_of[right.image] and right.reference.image != right.image
        assert subject_of[wrong.reference.image] != subject_of[right.image]
        assert not right.reference.masked and not wrong.reference.masked  # whole references, as users give them
    first, second = gap(session), gap(session)
    assert first == second  # fixed draws: the gap moves only with the encoder
    assert first["images"] == 7 and first["loss_right"] > 0


def test_an_encoder_that_ignores_the_reference_has_no_gap(training, sdxl_models, helpers, tiny_models, tmp_path):
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    held = helpers.make_data(tmp_path / "held", {"x": 2, "y": 2}, seed=5)
    session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out"), models=sdxl_models)
    gap = _gap(session, held)
    assert gap(session)["gap_percent"] != 0  # a random encoder's tokens differ with the reference
    with torch.no_grad():  # the resampler's input projection zeroed: its tokens no longer depend on the image
        for p in session.encoder.resampler.proj_in.parameters():
            p.zero_()
    measured = gap(session)
    assert measured["gap_percent"] == 0 and measured["loss_right"] == measured["loss_wrong"]


def test_training_logs_the_gap_at_the_first_step_every_k_steps_and_the_last(training, sdxl_models, helpers,
                                                                             tiny_models, tmp_path):
    from nested_attention.training.loop import train
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    held = helpers.make_data(tmp_path / "held", {"x": 2, "y": 2}, seed=5)
    config = helpers.tiny_config(tiny_models, data, tmp_path / "out", max_steps=5, validation_data=str(held),
                                 validate_every=2)
    train(open_session(config, models=sdxl_models))
    lines = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    events = [e for e in lines if e.get("event") == "validation"]
    assert [e["step"] for e in events] == [1, 2, 4, 5]
    assert all({"loss_right", "loss_wrong", "gap_percent"} <= set(e) for e in events)


def test_a_validation_folder_without_two_subjects_of_a_word_is_refused(training, sdxl_models, helpers, tiny_models,
                                                                        tmp_path):
    from nested_attention.training.errors import TrainingDataError
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    lonely = helpers.make_data(tmp_path / "lonely", {"x": 3})
    session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out"), models=sdxl_models)
    with pytest.raises(TrainingDataError, match="lonely needs at least two subjects of the same word"):
        _gap(session, lonely)


def test_a_missing_validation_folder_names_the_flag(training, sdxl_models, helpers, tiny_models, tmp_path):
    from nested_attention.training.errors import TrainingDataError
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out"), models=sdxl_models)
    with pytest.raises(TrainingDataError, match="validation folder .*sks_dog_heldout does not exist.*--validation-data"):
        _gap(session, tmp_path / "sks_dog_heldout")


def test_validate_every_must_be_positive(training, helpers, tiny_models, tmp_path):
    from nested_attention.training.errors import TrainingConfigError

    with pytest.raises(TrainingConfigError, match="--validate-every must be a positive integer"):
        helpers.tiny_config(tiny_models, tmp_path, tmp_path / "out", validate_every=0)
