import copy
import json

import pytest
import torch
from safetensors import safe_open
from fixtures.files import rewrite

from nested_attention.nested_attention_core.encoder import EncoderConfig, SubjectEncoder
from nested_attention.nested_attention_core.errors import (ModelMismatchError, NestedAttentionError, ReferenceImageError,
                                          SubjectWordError, WeightsFormatError)
from nested_attention.nested_attention_core.layers import LayerSpec
from nested_attention.nested_attention_core.subject import NestedSubject, encode_subject, load_subject, save_subject
from nested_attention.nested_attention_core.weights import save_weights

TINY = EncoderConfig(num_tokens=4, width=16, depth=2, heads=2, dim_head=8, ff_mult=2, image_feature_dim=12,
                     output_dim=10)
TINY_LAYERS = [LayerSpec("input", 1, 0, 8), LayerSpec("middle", 0, 0, 12), LayerSpec("output", 3, 1, 8)]


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return SubjectEncoder(TINY, TINY_LAYERS).eval()


@pytest.fixture
def subject(encoder):
    return encode_subject(encoder, torch.randn(2, 7, 12), "  Dog ", "tiny")


def test_encode_subject_concatenates_images_and_projects_every_layer(encoder):
    feats = torch.randn(3, 7, 12)
    calls = []
    subject = encode_subject(encoder, feats, "Dog", "tiny", progress=lambda d, t: calls.append((d, t)))
    with torch.no_grad():
        per_image = encoder.encode(feats)  # [3, 4, 10]
    assert subject.tokens.shape == (12, 10) and subject.num_tokens == 12
    for b in range(3):
        assert torch.allclose(subject.tokens[4 * b: 4 * (b + 1)], per_image[b], atol=1e-6)
    sd = encoder.state_dict()
    for layer in TINY_LAYERS:
        k, v = subject.nested[layer.id]
        assert k.shape == v.shape == (12, layer.width)
        assert torch.allclose(k, subject.tokens @ sd[f"nested_layers.{layer.id}.to_k.weight"].T, atol=1e-6)
        assert torch.allclose(v, subject.tokens @ sd[f"nested_layers.{layer.id}.to_v.weight"].T, atol=1e-6)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert not subject.tokens.requires_grad and not subject.nested["middle_0_0"][0].requires_grad
    assert subject.word == "dog" and subject.base_family == "tiny" and subject.context_dim == 10
    assert subject.layer_widths() == {"input_1_0": 8, "middle_0_0": 12, "output_3_1": 8}
    assert subject.layers() == TINY_LAYERS


def test_deepcopy_shares_the_subject(subject):
    options = {"transformer_options": {"subject": subject}}
    assert copy.deepcopy(options)["transformer_options"]["subject"] is subject
    with pytest.raises(AttributeError):
        subject.word = "cat"


def test_to_moves_every_tensor(subject):
    assert subject.to("cpu") is subject
    double = subject.to(dtype=torch.float64)
    assert double.tokens.dtype == torch.float64
    assert all(k.dtype == v.dtype == torch.float64 for k, v in double.nested.values())
    assert subject.tokens.dtype == torch.float32


@pytest.mark.parametrize("word", ["", "   ", "\n"])
def test_empty_word(encoder, word):
    with pytest.raises(SubjectWordError, match="empty"):
        encode_subject(encoder, torch.randn(1, 7, 12), word, "tiny")


def test_word_is_normalised(subject):
    assert subject.word == "dog"
    assert NestedSubject(" Teddy  BEAR ", subject.tokens, subject.nested, "tiny", 10).word == "teddy bear"


def test_wrong_feature_width(encoder):
    with pytest.raises(ModelMismatchError, match="CLIP vision model"):
        encode_subject(encoder, torch.randn(1, 7, 13), "dog", "tiny")


def test_no_reference_images(encoder):
    with pytest.raises(ReferenceImageError, match="at least one reference image"):
        encode_subject(encoder, torch.randn(0, 7, 12), "dog", "tiny")


def test_inconsistent_subject_is_rejected(subject):
    k, v = subject.nested["input_1_0"]
    with pytest.raises(NestedAttentionError, match="input_1_0"):
        NestedSubject("dog", subject.tokens, {"input_1_0": (k[:3], v[:3])}, "tiny", 10)
    with pytest.raises(NestedAttentionError, match=r"\[M>0, 11\]"):
        NestedSubject("dog", subject.tokens, subject.nested, "tiny", 11)


def test_save_load_round_trip_is_exact(tmp_path, subject):
    path = tmp_path / "dog.safetensors"
    save_subject(path, subject)
    loaded = load_subject(path)
    assert (loaded.word, loaded.base_family, loaded.context_dim) == ("dog", "tiny", 10)
    assert torch.equal(loaded.tokens, subject.tokens)
    assert list(loaded.nested) == list(subject.nested)
    for layer_id, (k, v) in subject.nested.items():
        assert torch.equal(loaded.nested[layer_id][0], k) and torch.equal(loaded.nested[layer_id][1], v)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert sorted(f.keys()) == sorted(["tokens"] + [f"nested.{i}.{p}" for i in subject.nested
                                                        for p in ("keys", "values")])
    assert meta["format"] == "nested_attention_subject" and meta["format_version"] == "2"
    assert meta["method"] == "nested" and loaded.method == "nested"
    assert json.loads(meta["layers"]) == [["input_1_0", 8], ["middle_0_0", 12], ["output_3_1", 8]]


# ---- bad subject files --------------------------------------------------------------------------

def saved(tmp_path, subject, edit_tensors=None, edit_meta=None):
    path = tmp_path / "s.safetensors"
    save_subject(path, subject)
    return rewrite(path, edit_tensors, edit_meta) if edit_tensors or edit_meta else path


def load_error(path):
    with pytest.raises(WeightsFormatError) as info:
        load_subject(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    return msg


def test_truncated_subject(tmp_path, subject):
    path = saved(tmp_path, subject)
    path.write_bytes(path.read_bytes()[:-40])
    assert "truncated" in load_error(path)


def test_text_file_subject(tmp_path):
    path = tmp_path / "s.safetensors"
    path.write_text("a dog\n" * 50)
    msg = load_error(path)
    assert "not a safetensors subject file" in msg and "save_subject" in msg


def test_missing_subject_key(tmp_path, subject):
    msg = load_error(saved(tmp_path, subject, edit_tensors=lambda t: t.pop("nested.output_3_1.values")))
    assert "missing tensors ['nested.output_3_1.values']" in msg and "encode the subject again" in msg


def test_extra_subject_key(tmp_path, subject):
    msg = load_error(saved(tmp_path, subject, edit_tensors=lambda t: t.update({"extra": torch.ones(1)})))
    assert "unexpected tensors ['extra']" in msg


def test_wrong_subject_shape(tmp_path, subject):
    msg = load_error(saved(tmp_path, subject,
                           edit_tensors=lambda t: t.update({"nested.middle_0_0.keys": torch.ones(8, 11)})))
    assert "nested.middle_0_0.keys" in msg and "[8, 11]" in msg and "[8, 12]" in msg


def test_subject_version_and_format(tmp_path, subject):
    msg = load_error(saved(tmp_path, subject, edit_meta=lambda m: m.update({"format_version": "7"})))
    assert "format_version '7'" in msg and "update" in msg
    msg = load_error(saved(tmp_path, subject, edit_meta=lambda m: m.update({"format": "nested_attention"})))
    assert "load_weights" in msg


def test_empty_word_in_file(tmp_path, subject):
    msg = load_error(saved(tmp_path, subject, edit_meta=lambda m: m.update({"word": " "})))
    assert "empty" in msg


def test_weights_file_given_as_subject(tmp_path, encoder):
    path = tmp_path / "w.safetensors"
    save_weights(path, encoder, "tiny")
    assert "not an encoded subject" in load_error(path)
