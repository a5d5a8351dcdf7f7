"""The command line: every flag documented, values checked with messages naming the flag."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields

import pytest

from nested_attention.nested_attention_core.families import SD15, SDXL


def test_help_documents_every_flag_without_comfyui(training, helpers):
    from nested_attention.training.config import TrainConfig

    env = {k: v for k, v in os.environ.items() if k != "NESTED_ATTENTION_COMFYUI"}
    done = subprocess.run([sys.executable, "-m", "nested_attention.training", "--help"], env=env,
                          capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for f in fields(TrainConfig):
        option = "--" + f.name.replace("_", "-")
        assert option in text, f"{option} is not documented in --help"
        assert " ".join(f.metadata["help"].split()[:4]) in text
    for required in ("--checkpoint FILE", "--clip-vision FILE", "--data DIR", "--output DIR"):
        assert required in text
    assert "torchrun --nproc_per_node N" in text and "Default: 0.05" in text


def test_the_command_line_gives_the_same_config(training, helpers, tiny_models, comfy_root):
    from nested_attention.training.config import config_from_argv

    args = helpers.cli_args(tiny_models, comfy_root, "data", "out", max_steps=7, drop_both=0.2, cache=False,
                            progress_bar=True)
    config = config_from_argv(args)
    expected = helpers.tiny_config(tiny_models, "data", "out", max_steps=7, drop_both=0.2, cache=False,
                                   progress_bar=True, comfyui=str(comfy_root),
                                   extra_module=(str(helpers.REPO_ROOT / "tests/harness/comfyui_pack/__init__.py"),))
    assert config == expected
    assert config.cache_path is None and config.resolved(SDXL).resolution == 64
    assert config.resolved(SDXL).name == "nested_attention_sdxl"
    assert helpers.tiny_config(tiny_models, "d", "o", resolution=None).resolved(SD15).resolution == 512


@pytest.mark.parametrize("overrides, message", [
    ({"drop_text": 0.6, "drop_subject": 0.6}, r"--drop-text, --drop-subject and --drop-both .* sum of at most 1"),
    ({"batch_size": 0}, r"--batch-size must be a positive integer, got 0"),
    ({"resolution": 100}, r"--resolution must be a multiple of 8"),
    ({"lr": 0.0}, r"--lr must be above 0"),
    ({"save_every": -1}, r"--save-every must be 0 or more"),
    ({"output": " "}, r"--output is required"),
    ({"reference_mask": 1.5}, r"--reference-mask is a share in \[0, 1\], got 1.5"),
    ({"reference_mask": -0.1}, r"--reference-mask is a share in \[0, 1\], got -0.1"),
])
def test_bad_values_name_the_flag(training, helpers, tiny_models, overrides, message):
    from nested_attention.training.errors import TrainingConfigError

    with pytest.raises(TrainingConfigError, match=message):
        helpers.tiny_config(tiny_models, "data", overrides.pop("output", "out"), **overrides)


@pytest.mark.parametrize("flag, value, message", [
    ("--reference-mask", "2", "--reference-mask is a share in [0, 1], got 2.0"),
    ("--batch-size", "0", "--batch-size must be a positive integer, got 0"),
    ("--lr", "nan", "--lr must be a finite number, got nan"),
])
def test_a_bad_value_on_the_command_line_is_a_usage_error_not_a_traceback(training, capsys, flag, value, message):
    from nested_attention.training.config import parse_args

    with pytest.raises(SystemExit) as exited:
        parse_args(["--checkpoint", "a", "--clip-vision", "b", "--data", "c", "--output", "d", flag, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err and "Traceback" not in err


def test_model_files_that_do_not_exist_are_named(training, helpers, tiny_models, tmp_path):
    from nested_attention.training.errors import TrainingConfigError
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 1})
    with pytest.raises(TrainingConfigError, match=r"--checkpoint nope.safetensors: no such file, nor a file of that "
                                                  r"name in ComfyUI's models/checkpoints"):
        open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out", checkpoint="nope.safetensors"))


def test_comfyui_is_found_where_the_pack_is_installed_else_by_flag_or_environment(training, tmp_path, monkeypatch):
    from nested_attention.training import bootstrap as comfy_host

    root = tmp_path / "ComfyUI"
    (root / "comfy").mkdir(parents=True)
    (root / "nodes.py").write_text("")
    installed = root / "custom_nodes" / "comfyui-nested-attention"
    installed.mkdir(parents=True)
    monkeypatch.setattr(comfy_host, "REPO_ROOT", installed)
    monkeypatch.setenv(comfy_host.COMFYUI_ENV, str(tmp_path / "elsewhere"))
    assert comfy_host.find_comfy_root(search_pack_location=True) == root.resolve()
    with pytest.raises(comfy_host.HostNotFoundError, match=r"no ComfyUI at .*elsewhere \(\$NESTED_ATTENTION_COMFYUI"):
        comfy_host.find_comfy_root()  # the fixtures' order: the environment first
    with pytest.raises(comfy_host.HostNotFoundError, match=r"no ComfyUI at .*nope \(the given ComfyUI folder.*--comfyui"):
        comfy_host.find_comfy_root(tmp_path / "nope", search_pack_location=True)
    monkeypatch.setattr(comfy_host, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv(comfy_host.COMFYUI_ENV, str(root))
    assert comfy_host.find_comfy_root(search_pack_location=True) == root.resolve()


def test_help_says_what_a_second_ctrl_c_does(training):
    """The first Ctrl-C saves and stops after the step; a second one exits at once without saving: --help says so."""
    from nested_attention.training.config import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "Ctrl-C" in text and "SIGTERM" in text
    assert "a second Ctrl-C exits at once without saving" in text


@pytest.mark.parametrize("name, value", [
    ("lr", float("inf")), ("lr", float("nan")), ("lr", -1e-4), ("weight_decay", float("nan")),
    ("max_grad_norm", float("inf")), ("background_loss_weight", float("nan")), ("sample_cfg", float("inf")),
    ("drop_text", float("nan")),
])
def test_float_flags_must_be_finite(training, helpers, tiny_models, name, value):
    """--lr inf used to train (and write NaN weights); a NaN slipped through every '< 0' check."""
    from nested_attention.training.config import config_from_argv
    from nested_attention.training.errors import TrainingConfigError

    flag = "--" + name.replace("_", "-")
    with pytest.raises(TrainingConfigError, match=rf"{flag} must be "):
        helpers.tiny_config(tiny_models, "data", "out", **{name: value})
    args = helpers.cli_args(tiny_models, "comfy", "data", "out") + [flag, str(value)]
    with pytest.raises(TrainingConfigError, match=rf"{flag} must be "):
        config_from_argv(args)


def test_skip_unusable_images_keeps_its_old_spelling_with_a_deprecation_warning(training, helpers, tiny_models,
                                                                               caplog):
    """--skip-bad-captions also skipped images too small to train on; it is spelled for what it does now."""
    from nested_attention.training.config import config_from_argv

    args = helpers.cli_args(tiny_models, "comfy", "data", "out")
    assert config_from_argv(args).skip_unusable_images is False
    assert config_from_argv(args + ["--skip-unusable-images"]).skip_unusable_images is True
    assert "deprecated" not in caplog.text
    assert config_from_argv(args + ["--skip-bad-captions"]).skip_unusable_images is True
    assert "--skip-bad-captions is deprecated: it is spelled --skip-unusable-images now" in caplog.text
    assert config_from_argv(args + ["--skip-bad-captions", "--no-skip-bad-captions"]).skip_unusable_images is False


def test_a_state_that_recorded_the_old_flag_name_resumes_without_a_changed_flag(training, helpers, tiny_models,
                                                                                tmp_path, caplog):
    import json

    from nested_attention.training.state import check_compatible

    config = helpers.tiny_config(tiny_models, "data", "out", skip_unusable_images=True)
    recorded = json.loads(config.to_json())
    recorded["skip_bad_captions"] = recorded.pop("skip_unusable_images")  # as a state written before the rename
    check_compatible(tmp_path / "state-1.pt", {"config": json.dumps(recorded), "identity": {}}, config.to_json(), {})
    assert "changed" not in caplog.text, caplog.text
