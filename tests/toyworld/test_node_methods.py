"""The nodes take nested attention only: the toy world's baseline files are refused by name.

The files are the toy world's committed ones (written before files recorded their method), copied
into the model folders as a user would copy them.
"""
import shutil
from pathlib import Path

import pytest
import torch

COMMITTED = Path(__file__).resolve().parents[2] / "toyworld" / "weights"
DECOUPLED_WEIGHTS = COMMITTED / "benchmark" / "toyworld_decoupled.safetensors"
SINGLE_TOKEN_WEIGHTS = COMMITTED / "benchmark" / "toyworld_single_token.safetensors"
DECOUPLED_ORACLE = COMMITTED / "benchmark" / "oracles" / "decoupled" / "pet_1801.safetensors"
NESTED_ORACLE = COMMITTED / "benchmark" / "oracles" / "nested_attention" / "pet_1801.safetensors"


@pytest.fixture(scope="module")
def nodes(host, tmp_path_factory):
    """The pack's nodes, with the toy world's files copied into models/ folders of their own."""
    import folder_paths

    from nested_attention.nodes import extension

    extension.register_model_folders()
    weights, subjects = tmp_path_factory.mktemp("nested_attention"), tmp_path_factory.mktemp("subjects")
    for source in (DECOUPLED_WEIGHTS, SINGLE_TOKEN_WEIGHTS):
        shutil.copyfile(source, weights / source.name)
    shutil.copyfile(DECOUPLED_ORACLE, subjects / "decoupled_pet.safetensors")
    shutil.copyfile(NESTED_ORACLE, subjects / "nested_pet.safetensors")
    folder_paths.add_model_folder_path("nested_attention", str(weights))
    folder_paths.add_model_folder_path("nested_attention_subjects", str(subjects))
    return extension, weights, subjects


def run(node, *args):
    return node.execute(*args).args[0]


@pytest.mark.parametrize("name, theirs", [
    ("toyworld_decoupled.safetensors", "decoupled cross-attention (method 'decoupled')"),
    ("toyworld_single_token.safetensors", "single token (method 'single_token')"),
])
def test_the_loader_refuses_baseline_weights_by_name(nodes, name, theirs):
    from nested_attention.nested_attention_core.errors import MethodError

    extension, folder, _ = nodes
    with pytest.raises(MethodError) as info:
        run(extension.NestedAttentionLoader, name)
    msg = str(info.value)
    assert str(folder / name) in msg and theirs in msg, msg
    assert "only nested attention (method 'nested') is accepted" in msg, msg


def test_load_subject_refuses_a_baseline_subject_and_takes_a_nested_one(nodes):
    from nested_attention.nested_attention_core.errors import MethodError

    extension, _, folder = nodes
    with pytest.raises(MethodError) as info:
        run(extension.NestedAttentionLoadSubject, "decoupled_pet.safetensors")
    msg = str(info.value)
    assert str(folder / "decoupled_pet.safetensors") in msg and "(method 'decoupled')" in msg, msg
    assert "only nested attention (method 'nested') is accepted" in msg, msg
    assert run(extension.NestedAttentionLoadSubject, "nested_pet.safetensors").method == "nested"


def test_subject_and_apply_nodes_refuse_baselines_given_by_code(nodes, host):
    """A baseline loaded past the Loader (the toy world loads them in code) is still refused by the nodes."""
    from nested_attention.nested_attention_core.errors import MethodError
    from nested_attention.nested_attention_core.subject import load_subject
    from nested_attention.nested_attention_core.weights import load_weights

    extension, _, _ = nodes
    weights = load_weights(DECOUPLED_WEIGHTS)
    assert weights.method == "decoupled"
    with pytest.raises(MethodError, match=r"weights file .*toyworld_decoupled.safetensors holds decoupled"):
        run(extension.NestedAttentionSubject, weights, None, torch.rand(1, 8, 8, 3), "dog")
    subject = load_subject(DECOUPLED_ORACLE)
    with pytest.raises(MethodError, match=r"subject 'dog' \(from subject file pet_1801.safetensors.*holds decoupled"):
        run(extension.ApplyNestedAttention, None, subject, 1.0, 0.0, 1.0)
