"""Files say what they are: each format's own version, a reader for every earlier one, the recorded method.

Version 1 files are written here as version 1 wrote them (the version-2 layout without ``method``,
``format_version`` "1"), as the toy world's second-edition files were (its third edition's files are
of the current versions: ``tests/toyworld/test_committed_files.py``).
"""
import pytest
import torch
from fixtures.files import rewrite, tensors_and_metadata

from nested_attention.nested_attention_core import files, subject as subject_format, weights as weights_format
from nested_attention.nested_attention_core.encoder import EncoderConfig, SubjectEncoder
from nested_attention.nested_attention_core.errors import MethodError, WeightsFormatError
from nested_attention.nested_attention_core.layers import LayerSpec
from nested_attention.nested_attention_core.methods import DECOUPLED, METHODS, NESTED, SINGLE_TOKEN
from nested_attention.nested_attention_core.subject import encode_subject, load_subject, save_subject
from nested_attention.nested_attention_core.weights import load_weights, save_weights

CONFIG = EncoderConfig(num_tokens=2, width=16, depth=1, heads=2, dim_head=8, ff_mult=2, image_feature_dim=12,
                       output_dim=10)
LAYERS = [LayerSpec("input", 1, 0, 8), LayerSpec("middle", 0, 0, 12)]


def encoder(seed=0):
    torch.manual_seed(seed)
    return SubjectEncoder(CONFIG, LAYERS)


def as_version_1(path):
    """Rewrite a file as version 1 wrote it: no method, format_version "1"."""
    def edit(meta):
        del meta["method"]
        meta["format_version"] = "1"
    return rewrite(path, edit_meta=edit)


def weights_file(tmp_path, name="w.safetensors", method=NESTED.name):
    path = tmp_path / name
    save_weights(path, encoder(), "tiny", method)
    return path


def subject_file(tmp_path, name="s.safetensors", method=NESTED.name, source=""):
    subject = encode_subject(encoder(), torch.randn(1, 5, 12), "dog", "tiny", source=source, method=method)
    path = tmp_path / name
    save_subject(path, subject)
    return path


# ---- one reader per earlier version ---------------------------------------------------------------

@pytest.mark.parametrize("current, upgrades", [
    (weights_format.WEIGHTS_FORMAT_VERSION, weights_format.WEIGHTS_UPGRADES),
    (subject_format.SUBJECT_FORMAT_VERSION, subject_format.SUBJECT_UPGRADES),
], ids=["weights", "subject"])
def test_every_earlier_version_has_a_reader(current, upgrades):
    assert set(upgrades) == {str(v) for v in range(1, int(current))}


@pytest.mark.parametrize("name, method", [
    ("w.safetensors", NESTED), ("toyworld_nested_attention.safetensors", NESTED),
    ("toyworld_decoupled.safetensors", DECOUPLED), ("toyworld_single_token_step000500.safetensors", SINGLE_TOKEN),
])
def test_version_1_weights_are_read_as_what_they_are(tmp_path, name, method):
    path = as_version_1(weights_file(tmp_path, name, method.name))
    loaded = load_weights(path)
    assert loaded.method == method.name
    ours, theirs = encoder().state_dict(), loaded.encoder.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("source, method", [
    ("", NESTED), ("weights tiny_sd15.safetensors", NESTED),
    ("oracle (nested_attention, person 1800)", NESTED),
    ("oracle (decoupled, pet 1801)", DECOUPLED),
])
def test_version_1_subjects_are_read_as_what_they_are(tmp_path, source, method):
    path = as_version_1(subject_file(tmp_path, method=method.name, source=source))
    assert load_subject(path).method == method.name


def _bump(monkeypatch, module, version_name, upgrades_name):
    """The next version, the obvious way: a new number, and an upgrade from today's."""
    old = getattr(module, version_name)
    new = str(int(old) + 1)
    upgrades = dict(getattr(module, upgrades_name))

    def upgrade(path, tensors, metadata):
        metadata["format_version"] = new
        return tensors, metadata

    upgrades[old] = upgrade
    monkeypatch.setattr(module, version_name, new)
    monkeypatch.setattr(module, upgrades_name, upgrades)
    return new


def test_bumping_the_weights_version_reads_older_weights_and_leaves_subjects_alone(tmp_path, monkeypatch):
    current = weights_file(tmp_path, "current.safetensors")
    old = as_version_1(weights_file(tmp_path, "toyworld_decoupled.safetensors", DECOUPLED.name))
    subject = subject_file(tmp_path)
    new = _bump(monkeypatch, weights_format, "WEIGHTS_FORMAT_VERSION", "WEIGHTS_UPGRADES")
    bumped = weights_file(tmp_path, "bumped.safetensors")
    assert tensors_and_metadata(bumped)[1]["format_version"] == new
    assert load_weights(current).method == NESTED.name  # today's files through the new upgrade
    assert load_weights(old).method == DECOUPLED.name  # version 1 through both upgrades
    assert load_weights(bumped).method == NESTED.name
    assert tensors_and_metadata(subject)[1]["format_version"] == subject_format.SUBJECT_FORMAT_VERSION
    assert load_subject(subject).word == "dog"  # the subject format kept its own version
    assert tensors_and_metadata(subject_file(tmp_path, "new.safetensors"))[1]["format_version"] != new


def test_bumping_the_subject_version_reads_older_subjects_and_leaves_weights_alone(tmp_path, monkeypatch):
    current = subject_file(tmp_path, "current.safetensors")
    old = as_version_1(subject_file(tmp_path, "old.safetensors", DECOUPLED.name,
                                    "oracle (decoupled, pet 1801)"))
    weights = weights_file(tmp_path)
    new = _bump(monkeypatch, subject_format, "SUBJECT_FORMAT_VERSION", "SUBJECT_UPGRADES")
    assert tensors_and_metadata(subject_file(tmp_path, "bumped.safetensors"))[1]["format_version"] == new
    assert load_subject(current).method == NESTED.name
    assert load_subject(old).method == DECOUPLED.name
    assert load_weights(weights).method == NESTED.name
    assert tensors_and_metadata(weights_file(tmp_path, "new.safetensors"))[1]["format_version"] != new


def test_an_upgrade_chain_that_never_reaches_the_current_version_is_an_error(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(WeightsFormatError, match="format_version '1' is not one this node pack reads"):
        files.upgrade_to(path, "weights", {}, {"format_version": "1"}, "3",
                         {"1": lambda p, t, m: (t, {**m, "format_version": "1"})})


# ---- the recorded method, and callers that accept only some ----------------------------------------

@pytest.mark.parametrize("method", list(METHODS.values()), ids=list(METHODS))
def test_files_record_their_method(tmp_path, method):
    assert tensors_and_metadata(weights_file(tmp_path, method=method.name))[1]["method"] == method.name
    assert load_weights(tmp_path / "w.safetensors").method == method.name
    assert tensors_and_metadata(subject_file(tmp_path, method=method.name))[1]["method"] == method.name
    assert load_subject(tmp_path / "s.safetensors").method == method.name


@pytest.mark.parametrize("version_1", [False, True], ids=["version 2", "version 1"])
def test_weights_of_another_method_are_refused_by_name(tmp_path, version_1):
    path = weights_file(tmp_path, "toyworld_decoupled.safetensors", DECOUPLED.name)
    if version_1:
        as_version_1(path)
    with pytest.raises(MethodError) as info:
        load_weights(path, accept=[NESTED.name])
    msg = str(info.value)
    assert str(path) in msg and "decoupled cross-attention (method 'decoupled')" in msg, msg
    assert "only nested attention (method 'nested') is accepted" in msg and "baselines" in msg, msg


def test_subjects_of_another_method_are_refused_by_name(tmp_path):
    path = subject_file(tmp_path, method=SINGLE_TOKEN.name)
    with pytest.raises(MethodError) as info:
        load_subject(path, accept=[NESTED.name])
    msg = str(info.value)
    assert str(path) in msg and "single token (method 'single_token')" in msg, msg
    assert "only nested attention (method 'nested') is accepted" in msg and "Nested Attention Subject" in msg, msg


def test_an_unknown_method_name_is_not_written():
    with pytest.raises(ValueError, match="unknown method 'ip_adapter'"):
        save_weights("unused.safetensors", encoder(), "tiny", "ip_adapter")
