"""The toy world's committed files are of the pack's current formats, record their method, and the pack's
readers take each as the method it is. (Files of format version 1, which recorded no method, as the
second edition's were: tests/core/test_file_versions.py rewrites files as version 1 wrote them.)"""
from pathlib import Path

from fixtures.files import tensors_and_metadata

from nested_attention.nested_attention_core.methods import DECOUPLED, NESTED, SINGLE_TOKEN
from nested_attention.nested_attention_core.subject import SUBJECT_FORMAT_VERSION, load_subject
from nested_attention.nested_attention_core.weights import WEIGHTS_FORMAT_VERSION, load_weights

COMMITTED = Path(__file__).resolve().parents[2] / "toyworld" / "weights"


def test_committed_toy_world_files_are_of_the_current_versions(tmp_path):
    """Each committed file is of the current format version, records its method and reads as it."""
    cases = {"models/nested_attention/toyworld_nested_attention.safetensors": NESTED,
             "benchmark/toyworld_single_token.safetensors": SINGLE_TOKEN,
             "benchmark/toyworld_decoupled.safetensors": DECOUPLED}
    for rel, method in cases.items():
        metadata = tensors_and_metadata(COMMITTED / rel)[1]
        assert (metadata["format_version"], metadata["method"]) == (WEIGHTS_FORMAT_VERSION, method.name)
        assert load_weights(COMMITTED / rel, accept=[method.name]).method == method.name
    oracles = sorted((COMMITTED / "benchmark" / "oracles").glob("*/*.safetensors"))
    assert {p.parent.name for p in oracles} == {NESTED.file_key, DECOUPLED.file_key}
    for path in oracles:
        method = {NESTED.file_key: NESTED, DECOUPLED.file_key: DECOUPLED}[path.parent.name]
        metadata = tensors_and_metadata(path)[1]
        assert (metadata["format_version"], metadata["method"]) == (SUBJECT_FORMAT_VERSION, method.name)
        assert load_subject(path, accept=[method.name]).method == method.name
