"""The command line: preview sheet, dataset writer, scorer training, run as a script and as functions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from nested_attention.toyworld.cli import main
from nested_attention.toyworld.identity import HELDOUT_START
from nested_attention.toyworld.preview import LABEL_HEIGHT, PREVIEW_SCENES, look_scenes
from nested_attention.toyworld.scoring import load_scorer

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_preview_runs_from_the_command_line_and_writes_the_sheet(tmp_path):
    out = tmp_path / "sheet.png"
    subprocess.run([sys.executable, "-m", "nested_attention.toyworld", "preview", str(out), "--per-domain", "1",
                    "--zoom", "1"], check=True, capture_output=True, cwd=tmp_path)
    sheet = Image.open(out)
    looks = max(len(look_scenes(domain)) for domain in ("person", "pet"))
    # a person, a pet, the pairs row, then each domain's row of look values (the widest sets the width)
    assert sheet.size == (max(len(PREVIEW_SCENES), looks) * 64, LABEL_HEIGHT + 5 * 64)


def test_write_dataset_and_its_held_out_guard(tmp_path, caplog):
    assert main(["write-dataset", str(tmp_path / "d"), "--ids", "2", "--renders", "1", "--domains", "pet"]) == 0
    assert json.loads((tmp_path / "d" / "subjects.json").read_text()) == {"pet_0000": "dog", "pet_0001": "dog"}
    assert main(["write-dataset", str(tmp_path / "e"), "--first-id", str(HELDOUT_START), "--ids", "1"]) == 2
    assert "held out" in caplog.text


def test_train_scorers_writes_both_models_and_a_report(tmp_path):
    args = ["train-scorers", str(tmp_path), "--train-ids", "6", "--renders", "2", "--identity-epochs", "1",
            "--scene-epochs", "1", "--eval-ids", "3"]
    assert main(args) == 0
    report = json.loads((tmp_path / "scorer_report.json").read_text())
    assert set(report["scene"]) == {"background", "placement", "framing", "style", "shirt", "expression", "hat",
                                    "accessory", "pose", "all"}  # the look factors too
    assert report["eval_identities"] == 6 and report["train_images"] == 24
    assert {"roc_auc", "top1_retrieval", "same_identity_cos"} <= set(report["identity"])
    assert load_scorer(tmp_path / "identity.safetensors").config.num_classes == 12
    assert load_scorer(tmp_path / "scene.safetensors").config.heads[0] == ("background", 8)
