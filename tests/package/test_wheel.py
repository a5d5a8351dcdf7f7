"""The wheel (``pip install`` of this repository, not editable): the product's code and the files ComfyUI
serves from it: the templates with their thumbnails and ``web/`` (the frontend extension and the node help
pages). It is built by pip from a copy of the git-tracked files, with the venv's setuptools."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVED = ("nodes/", "nested_attention_core/", "training/", "example_workflows/", "web/")


def test_the_wheel_holds_the_code_templates_thumbnails_and_web_folder(tmp_path):
    """pyproject's package data named example_workflows/input/*.png (no such files) and neither the templates'
    .jpg thumbnails nor web/: a pip-installed pack had no frontend extension, node docs or thumbnails.
    Measures: every git-tracked file of the served folders (but READMEs outside web/) is in the wheel."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    source = tmp_path / "source"
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("nested_attention-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    wanted = [name for name in tracked if name.startswith(SERVED)
              and not (name.endswith("README.md") and not name.startswith("web/"))]
    assert any(name.endswith(".jpg") for name in wanted) and any(name.startswith("web/") for name in wanted)
    missing = [name for name in wanted if f"nested_attention/{name}" not in shipped]
    assert not missing, missing
