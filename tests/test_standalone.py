"""The product stands alone: neither the pack (nodes, core, trainer), its tests nor the benchmarks import the toy world.

Static (the import statements and file paths of each module), so that it holds for code no test
happens to run: every ``import`` / ``from ... import`` (relative ones resolved against the module's
package), and every string that is not a docstring (a path such as ``"toyworld/comfyui_pack"``
handed to a loader is an import too). The toy world (``toyworld/``, ``tests/toyworld/``) builds on
the pack and on the tests' harness, never the other way round.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS = REPO_ROOT / "tests"
# (folder, the package its modules belong to: "" for test folders outside any package)
PRODUCT = [(REPO_ROOT / "nodes", "nested_attention.nodes"),
           (REPO_ROOT / "nested_attention_core", "nested_attention.nested_attention_core"),
           (REPO_ROOT / "training", "nested_attention.training"),
           (REPO_ROOT / "benchmarks", "nested_attention.benchmarks")]  # they measure the product
PRODUCT_TESTS = [(TESTS / "harness", "harness"), (TESTS / "fixtures", "fixtures")] + [
    (TESTS / part, "") for part in ("core", "host", "server", "training", "browser")]
TOP_LEVEL = [REPO_ROOT / "__init__.py", TESTS / "conftest.py"]


def modules() -> list[tuple[Path, str]]:
    found = [(path, "nested_attention" if path.parent == REPO_ROOT else "") for path in TOP_LEVEL]
    for folder, package in PRODUCT + PRODUCT_TESTS:
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            dotted = ".".join([package, *parts[:-1]]) if package else ""
            found.append((path, dotted))
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


TOY_PATH = re.compile(r"\btoyworld(?:[./\\]|$)")  # a module or path of the toy world, not a file-name prefix


def toy_world_references(source: str, package: str) -> list[str]:
    """Each import of a ``toyworld`` module and each non-docstring string naming a ``toyworld`` module or
    path (``toyworld/...``, ``toyworld.x``); a file-name prefix such as ``toyworld_decoupled`` is neither."""
    tree = ast.parse(source)
    docstrings, found = _docstrings(tree), []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1] if package else []
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if TOY_PATH.search(node.value):
                found.append(f"line {node.lineno}: string {node.value[:80]!r}")
        found += [f"line {node.lineno}: import {name}" for name in names if "toyworld" in name.split(".")]
    return found


def test_the_check_sees_every_kind_of_toy_world_import():
    """The check itself fails on what it is meant to find (absolute, relative, from-parent, by path)."""
    assert toy_world_references("import nested_attention.toyworld.server", "")
    assert toy_world_references("from nested_attention.toyworld import server", "")
    assert toy_world_references("from ..toyworld.tiny_models import x", "nested_attention.nodes")
    assert toy_world_references("from .. import toyworld", "nested_attention.nodes")
    assert toy_world_references("def f():\n    from ...toyworld import family\n", "nested_attention.nodes.host")
    assert toy_world_references('PACK = ROOT / "toyworld/comfyui_pack/__init__.py"', "")
    assert not toy_world_references('"""The toy world (toyworld/) builds on this."""\nimport harness.server', "")
    assert not toy_world_references("from .workflows import load_workflow", "harness")
    assert toy_world_references('runpy.run_module("nested_attention.toyworld")', "")
    assert not toy_world_references('OLD_BASELINE_NAME = "toyworld_decoupled"', "")


MODULES = dict(modules())


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_no_product_module_or_product_test_imports_the_toy_world(path):
    assert not toy_world_references(path.read_text(), MODULES[path]), path
