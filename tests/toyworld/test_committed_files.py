"""The toy world's committed files were written by format version 1 (no method recorded): the pack's
readers take each as the method it is (the product's version tests: tests/core/test_file_versions.py)."""
from pathlib import Path

from fixtures.files import tensors_and_metadata

from nested_attention.nested_attention_core.methods import DECOUPLED, NESTED, SINGLE_TOKEN
from nested_attention.nested_attention_core.subject import load_subject
from nested_attention.nested_attention_core.weights import load_weights

COMMITTED = Path(__file__).resolve().parents[2] / "toyworld" / "weights"


def test_committed_toy_world_files_of_version_1(tmp_path):
    """The toy world's committed files were written by version 1: each reads as the method it is."""
    cases = {"models/nested_attention/toyworld_nested_attention.safetensors": NESTED,
             "benchmark/toyworld_single_token.safetensors": SINGLE_TOKEN,
             "benchmark/toyworld_decoupled.safetensors": DECOUPLED}
    for rel, method in cases.items():
        assert tensors_and_metadata(COMMITTED / rel)[1]["format_version"] == "1"
        assert load_weights(COMMITTED / rel, accept=[method.name]).method == method.name
    oracles = sorted((COMMITTED / "benchmark" / "oracles").glob("*/*.safetensors"))
    assert {p.parent.name for p in oracles} == {NESTED.file_key, DECOUPLED.file_key}
    for path in oracles:
        method = {NESTED.file_key: NESTED, DECOUPLED.file_key: DECOUPLED}[path.parent.name]
        assert load_subject(path, accept=[method.name]).method == method.name
