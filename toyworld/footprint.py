"""What the toy world takes from the product: lines per top-level folder, and the product modules each
toy module imports (the tables of README.md's "Built on the pack" section).

    python -m nested_attention.toyworld.footprint        (from a checkout: reads git's file list)

Lines: every text file git tracks (binary files, e.g. weights and images, are left out), by top-level
folder, and of those the Python lines; ``tests/`` is split by its folders. Imports: each ``import``
and ``from ... import`` of a toy-world module (relative ones resolved), kept where they name the
pack's modules (``nodes``, ``nested_attention_core``, ``training``) or the tests' harness.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TOYWORLD = REPO_ROOT / "toyworld"
PRODUCT = ("nested_attention.nodes", "nested_attention.nested_attention_core", "nested_attention.training")


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return [REPO_ROOT / name for name in out.decode().split("\0") if name]


def line_counts() -> dict[str, tuple[int, int]]:
    """folder -> (lines of text files, lines of Python files); ``tests/<part>/`` separately."""
    counts = defaultdict(lambda: [0, 0])
    for path in tracked_files():
        try:
            data = path.read_bytes()
        except OSError:  # deleted in the working tree
            continue
        if b"\0" in data[:8192]:
            continue
        parts = path.relative_to(REPO_ROOT).parts
        folder = "(top-level files)" if len(parts) == 1 else (
            f"tests/{parts[1]}/" if parts[0] == "tests" and len(parts) > 2 else f"{parts[0]}/")
        lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        counts[folder][0] += lines
        counts[folder][1] += lines if path.suffix == ".py" else 0
    return {folder: tuple(c) for folder, c in counts.items()}


def _imported(path: Path) -> set[str]:
    rel = path.relative_to(REPO_ROOT).with_suffix("").parts
    package = ["nested_attention", *rel[:-1]]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[:len(package) - node.level + 1], *([base] if base else [])])
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _product_module(name: str) -> str | None:
    """``nodes.host`` / ``nested_attention_core.weights`` / ``training.bootstrap`` / ``harness.server``, or None."""
    for prefix in PRODUCT:
        if name == prefix or name.startswith(prefix + "."):
            parts = name.split(".")[1:]
            # keep modules, drop imported names: the longest prefix that is a file or folder
            for end in range(len(parts), 0, -1):
                candidate = REPO_ROOT.joinpath(*parts[:end])
                if candidate.with_suffix(".py").is_file() or candidate.is_dir():
                    return ".".join(parts[:end])
    if name.startswith("harness."):
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = REPO_ROOT.joinpath("tests", *parts[:end])
            if candidate.with_suffix(".py").is_file() or candidate.is_dir():
                return ".".join(parts[:end])
    return None


def toy_imports() -> dict[str, list[str]]:
    """toy module (relative to toyworld/) -> the product and harness modules it imports (sorted)."""
    table = {}
    for path in sorted(TOYWORLD.rglob("*.py")):
        used = sorted({m for m in map(_product_module, _imported(path)) if m})
        table[str(path.relative_to(TOYWORLD))] = used
    return table


def main() -> int:
    counts = line_counts()
    print("| folder | lines (text files) | of which Python |\n| --- | ---: | ---: |")
    for folder, (lines, python) in sorted(counts.items(), key=lambda item: -item[1][0]):
        print(f"| `{folder}` | {lines:,} | {python:,} |")
    table = toy_imports()
    print("\n| toy module | product modules it imports (and the harness) |\n| --- | --- |")
    for module, used in table.items():
        if used:
            print(f"| `{module}` | {', '.join(f'`{m}`' for m in used)} |")
    alone = [m for m, used in table.items() if not used]
    print(f"\nImport nothing of the product or the harness ({len(alone)}): {', '.join(f'`{m}`' for m in alone)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
