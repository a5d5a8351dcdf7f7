"""The Comfy Registry's package of the pack, made by the registry's own tool, installed in a fresh ComfyUI.

``comfy node pack`` (comfy-cli, set up by ``make package-tools``) zips the git-tracked files that
``.comfyignore`` lets through; the registry publishes exactly that zip, and ComfyUI-Manager or ``comfy
node install`` unpack it into ``custom_nodes/<node id>/``. The test runs the real tool rather than a copy
of its rules, so the file set checked here is the one users get. It unpacks the zip into an otherwise
empty ``custom_nodes/`` and starts a real server: the seven nodes, the templates and the frontend
extension must come from the zip alone: the repository's folder is not linked in, and the server's
Python is kept from this checkout's editable install (``make setup``'s ``pip install -e .``), whose import
finder would otherwise supply any module missing from the zip.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMFY_CLI_ENV = "NESTED_ATTENTION_COMFY_CLI"
DEFAULT_COMFY_CLI = REPO_ROOT / ".comfy-cli" / "bin" / "comfy"
NODE_ID = "nested-attention"  # pyproject's [project] name: the folder the registry installs into
MAX_ZIP_BYTES = 1_000_000
PRODUCT = ("__init__.py", "README.md", "LICENSE", "pyproject.toml",
           "nodes/", "nested_attention_core/", "training/", "web/", "example_workflows/")
TEMPLATES = ("sd15_region_mask", "sdxl_one_subject", "sdxl_two_subjects")
PACK_NODE_IDS = ("NestedAttentionLoader", "NestedAttentionSubject", "NestedAttentionTextEncode",
                 "ApplyNestedAttention", "NestedAttentionSaveSubject", "NestedAttentionLoadSubject",
                 "NestedAttentionPreview")


def comfy_cli() -> Path:
    path = Path(os.environ.get(COMFY_CLI_ENV) or DEFAULT_COMFY_CLI)
    if not path.is_file():
        pytest.fail(f"comfy-cli not found at {path}: run `make package-tools` (a venv .comfy-cli/ with "
                    f"comfy-cli), or point ${COMFY_CLI_ENV} at a `comfy` executable")
    return path


@pytest.fixture(scope="module")
def registry_zip(tmp_path_factory) -> Path:
    """``comfy node pack`` run in the repository (it writes ``node.zip`` there), moved to a temporary folder."""
    packed = REPO_ROOT / "node.zip"
    result = subprocess.run([str(comfy_cli()), "--skip-prompt", "--no-json", "node", "pack"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and packed.is_file(), result.stdout + result.stderr
    target = tmp_path_factory.mktemp("registry") / "node.zip"
    shutil.move(packed, target)
    return target


def test_the_zip_holds_the_product_only_and_is_small(registry_zip):
    names = zipfile.ZipFile(registry_zip).namelist()
    outside = [n for n in names if not n.startswith(PRODUCT)]
    assert not outside, outside
    assert not [n for n in names if "toyworld" in n or n.endswith((".safetensors", ".pt", ".ckpt"))]
    for required in ("__init__.py", "nodes/extension.py", "nested_attention_core/attention.py", "training/cli.py",
                     "web/nested_attention.js", "LICENSE", "README.md", "pyproject.toml"):
        assert required in names, required
    assert {f"example_workflows/{t}{ext}" for t in TEMPLATES for ext in (".json", ".jpg")} <= set(names)
    assert registry_zip.stat().st_size < MAX_ZIP_BYTES, registry_zip.stat().st_size


# Run by the server's Python at start-up (a ``sitecustomize`` module on PYTHONPATH): it drops the
# import finder of the editable install, so ``nested_attention.*`` resolves inside the unpacked folder only.
HIDE_EDITABLE_INSTALL = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable___nested_attention")]
"""


@pytest.fixture(scope="module")
def installed_server(registry_zip, server_harness, tmp_path_factory):
    """A real ComfyUI whose ``custom_nodes/`` holds nothing but the unpacked zip."""
    base = tmp_path_factory.mktemp("fresh_comfyui")
    for sub in ("custom_nodes", "input", "output", "user", "frontend", "site"):
        (base / sub).mkdir()
    zipfile.ZipFile(registry_zip).extractall(base / "custom_nodes" / NODE_ID)
    (base / "site" / "sitecustomize.py").write_text(HIDE_EDITABLE_INSTALL)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", str(base / "site"))
        server = server_harness.start_server(base)
    try:
        yield server
    finally:
        server.stop()


def test_the_unpacked_zip_loads_its_seven_nodes_in_a_fresh_comfyui(installed_server):
    log = installed_server.startup_log()
    failed = [line for line in log.splitlines() if NODE_ID in line and ("IMPORT FAILED" in line or "Cannot import" in line)]
    assert not failed, log
    assert set(PACK_NODE_IDS) <= set(installed_server.object_info()), installed_server.log_tail()
    modules = {installed_server.object_info()[n]["python_module"] for n in PACK_NODE_IDS}
    assert modules == {f"custom_nodes.{NODE_ID}"}, modules


def test_the_unpacked_zip_serves_its_templates_and_frontend_extension(installed_server):
    listed = installed_server.get_json("/api/workflow_templates")
    assert sorted(listed[NODE_ID]) == sorted(TEMPLATES), listed
    for name in TEMPLATES:  # the thumbnails the template browser shows
        status, body = installed_server.request(f"/api/workflow_templates/{NODE_ID}/{name}.jpg")
        assert status == 200 and body[:3] == b"\xff\xd8\xff", (name, status)
    status, body = installed_server.request(f"/extensions/{NODE_ID}/nested_attention.js")
    assert status == 200 and b"registerExtension" in body, status
