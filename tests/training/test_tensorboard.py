"""--log-with tensorboard: the step scalars, the reference gap and the sample grids as TensorBoard events beside
train_log.jsonl; without the tensorboard package, an error naming it before any model is loaded."""
from __future__ import annotations

import builtins
import json

import pytest


def test_tensorboard_gets_the_scalars_the_gap_and_the_grids(training, sdxl_models, helpers, tiny_models, tmp_path):
    pytest.importorskip("tensorboard")  # a dev dependency (Makefile); optional for users
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nested_attention.training.loop import train
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    held_out = helpers.make_data(tmp_path / "held_out", {"c": 2, "d": 2}, seed=5)
    out = tmp_path / "out"
    config = helpers.tiny_config(tiny_models, data, out, max_steps=4, log_every=2, sample_every=2, sample_steps=1,
                                 sample_count=1, validation_data=str(held_out), validate_every=2,
                                 log_with="tensorboard")
    train(open_session(config, models=sdxl_models))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 4]  # train_log.jsonl as before

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {"train/loss", "train/lr", "train/grad_norm", "train/samples_per_s",
                                    "validation/gap_percent", "validation/loss_right", "validation/loss_wrong"}
    losses = {e.step: e.value for e in events.Scalars("train/loss")}
    assert losses == pytest.approx({r["step"]: r["loss"] for r in log if "loss" in r}, rel=1e-6)
    gaps = {e.step: e.value for e in events.Scalars("validation/gap_percent")}
    assert gaps == pytest.approx({r["step"]: r["gap_percent"] for r in log if r.get("event") == "validation"},
                                 rel=1e-5)
    assert sorted(gaps) == [1, 2, 4]
    images = events.Images("samples")
    assert [i.step for i in images] == [2, 4]
    from PIL import Image
    import io

    grid = Image.open(io.BytesIO(images[-1].encoded_image_string))
    assert grid.size == Image.open(out / "samples" / "step0000004.png").size  # the grid itself, not a thumbnail


def test_a_missing_tensorboard_is_named_before_the_models_load(training, helpers, tiny_models, tmp_path, monkeypatch):
    from nested_attention.training import session as session_module
    from nested_attention.training.errors import TrainingConfigError

    real_import = builtins.__import__

    def without_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard.") or name == "torch.utils.tensorboard":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    loaded = []
    monkeypatch.setattr(session_module, "load_base_models", lambda config: loaded.append(config))
    monkeypatch.setattr(builtins, "__import__", without_tensorboard)
    for module in [m for m in list(__import__("sys").modules) if m.startswith(("tensorboard", "torch.utils.tensorboard"))]:
        monkeypatch.delitem(__import__("sys").modules, module)
    config = helpers.tiny_config(tiny_models, helpers.make_data(tmp_path / "data", {"a": 2}), tmp_path / "out",
                                 log_with="tensorboard")
    with pytest.raises(TrainingConfigError, match=r"needs the tensorboard package.*pip install tensorboard"):
        session_module.open_session(config)
    assert not loaded
