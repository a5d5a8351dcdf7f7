"""The experiment's stages in parallel processes (``experiment --jobs N``, what ``make toyworld`` runs)."""
from __future__ import annotations

import json

import pytest

from nested_attention.toyworld.errors import ExperimentError
from nested_attention.toyworld.stage_runner import ready_stages, run_parallel

FIRST = ["data", "scorers", "vae", "clip"]


def test_scorers_vae_and_clip_are_ready_together_once_the_data_is_done():
    assert ready_stages(FIRST, set(), {}) == ["data", "scorers"]
    assert ready_stages(FIRST, {"data"}, {"scorers": None}) == ["vae", "clip"]
    assert ready_stages(["base"], {"vae"}, {}) == []  # clip is not done


def test_stages_run_as_processes_each_with_its_log_and_stamp(tmp_path):
    run_parallel(tmp_path, "smoke", FIRST, jobs=3)
    for stage in FIRST:
        assert json.loads((tmp_path / f"{stage}.done.json").read_text())["seconds"] >= 0
        assert (tmp_path / "logs" / f"{stage}.log").is_file()
    logs = {stage: (tmp_path / "logs" / f"{stage}.log").stat().st_mtime_ns for stage in FIRST}
    run_parallel(tmp_path, "smoke", FIRST, jobs=3)  # all stamped: nothing runs again
    assert logs == {stage: (tmp_path / "logs" / f"{stage}.log").stat().st_mtime_ns for stage in FIRST}


def test_a_failing_stage_is_named_with_its_log_and_stops_the_others(tmp_path):
    (tmp_path / "data").write_text("not a folder")  # the data stage cannot write data/train
    with pytest.raises(ExperimentError, match=r"stage data failed .*logs/data\.log"):
        run_parallel(tmp_path, "smoke", FIRST, jobs=3)
    assert not (tmp_path / "vae.done.json").exists()
    assert "Error" in (tmp_path / "logs" / "data.log").read_text()


def test_a_missing_earlier_stage_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(ExperimentError, match=r"stage\(s\) data, encoders, scorers must run first"):
        run_parallel(tmp_path, "smoke", ["vae", "publish"], jobs=2)
    assert not (tmp_path / "logs" / "vae.log").exists()
