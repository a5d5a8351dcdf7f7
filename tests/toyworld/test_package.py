"""What ``toyworld/__init__.py`` says of the package holds: the world and the scorers never import ComfyUI."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import nested_attention.toyworld as toyworld

# The modules of the first table in toyworld/__init__.py: the world and the scorers.
WORLD = ["identity", "scene", "variation", "rng", "pen", "person", "pet", "backgrounds", "styles", "render",
         "dataset", "nets", "scoring", "scorer_training", "scorer_pipeline", "metrics", "preview", "cli"]

_SCRIPT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module("nested_attention.toyworld." + name)
print("RESULT " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("comfy", "nodes", "folder_paths", "harness"))))
"""


def test_the_docstring_table_names_the_world_modules():
    first_table = toyworld.__doc__.split("On ComfyUI")[0]
    named = set(re.findall(r"``(\w+)\.py``", first_table))
    assert named == set(WORLD)


def test_the_world_and_the_scorers_never_import_comfyui():
    done = subprocess.run([sys.executable, "-c", _SCRIPT, *WORLD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.rsplit("RESULT ", 1)[1]) == []
