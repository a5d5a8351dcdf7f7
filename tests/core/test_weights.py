import argparse
import json
import logging

import pytest
import torch
from fixtures.files import rewrite, tensors_and_metadata
from safetensors.torch import save_file

from nested_attention.nested_attention_core.encoder import EncoderConfig, SubjectEncoder
from nested_attention.nested_attention_core.errors import WeightsFormatError
from nested_attention.nested_attention_core.layers import LayerSpec
from nested_attention.nested_attention_core.weights import ip_adapter_file_family, load_weights, save_weights

TINY = EncoderConfig(num_tokens=4, width=16, depth=2, heads=2, dim_head=8, ff_mult=2, image_feature_dim=12,
                     output_dim=10)
TINY_LAYERS = [LayerSpec("input", 1, 0, 8), LayerSpec("middle", 0, 0, 12), LayerSpec("output", 3, 1, 8)]
# IP-Adapter files: dim_head is 64 there; small otherwise. Token width 8 is no real family's, so the
# family comes from the layer count (documented in weights.py).
IP_CFG = dict(num_tokens=4, width=16, depth=2, heads=1, dim_head=64, ff_mult=2, image_feature_dim=12, output_dim=8)

# diffusers processor order, written out by hand: down blocks, up blocks, then mid.
SD15_IP_ORDER = (
    [("input_1_0", 320), ("input_2_0", 320), ("input_4_0", 640), ("input_5_0", 640),
     ("input_7_0", 1280), ("input_8_0", 1280)]
    + [(f"output_{i}_0", 1280) for i in (3, 4, 5)] + [(f"output_{i}_0", 640) for i in (6, 7, 8)]
    + [(f"output_{i}_0", 320) for i in (9, 10, 11)] + [("middle_0_0", 1280)]
)
SDXL_IP_ORDER = (
    [(f"input_{b}_{d}", 640) for b in (4, 5) for d in range(2)]
    + [(f"input_{b}_{d}", 1280) for b in (7, 8) for d in range(10)]
    + [(f"output_{b}_{d}", 1280) for b in (0, 1, 2) for d in range(10)]
    + [(f"output_{b}_{d}", 640) for b in (3, 4, 5) for d in range(2)]
    + [(f"middle_0_{d}", 1280) for d in range(10)]
)


def tiny_encoder(seed=0):
    torch.manual_seed(seed)
    return SubjectEncoder(TINY, TINY_LAYERS)


def ip_adapter_tensors(ip_plus_shapes, order, seed=0):
    """(image_proj dict, ip_adapter dict) of a synthetic IP-Adapter Plus file."""
    g = torch.Generator().manual_seed(seed)
    proj = {k: torch.randn(shape, generator=g) for k, shape in ip_plus_shapes(**IP_CFG).items()}
    ip = {}
    for k, (_, width) in enumerate(order):
        for name in ("to_k_ip", "to_v_ip"):
            ip[f"{2 * k + 1}.{name}.weight"] = torch.randn(width, IP_CFG["output_dim"], generator=g)
    return proj, ip


def write_ip_safetensors(path, proj, ip):
    flat = {f"image_proj.{k}": v for k, v in proj.items()} | {f"ip_adapter.{k}": v for k, v in ip.items()}
    save_file(flat, str(path))
    return path


def assert_names_file_and_fix(info, path, *fix_words):
    msg = str(info.value)
    assert str(path) in msg, msg
    for word in fix_words:
        assert word in msg, msg


# ---- our format ---------------------------------------------------------------------------------

def test_round_trip_is_bit_exact(tmp_path):
    enc = tiny_encoder()
    path = tmp_path / "w.safetensors"
    save_weights(path, enc, "tiny")
    loaded = load_weights(path)
    assert loaded.base_family == "tiny" and loaded.source_format == "nested_attention"
    assert loaded.config == TINY and loaded.layers == TINY_LAYERS and loaded.context_dim == 10
    ours, theirs = enc.state_dict(), loaded.encoder.state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        assert theirs[k].dtype == ours[k].dtype and torch.equal(theirs[k], ours[k]), k
    assert not loaded.encoder.training
    assert all(not p.requires_grad for p in loaded.encoder.parameters())
    feats = torch.randn(1, 5, 12)
    with torch.no_grad():
        assert torch.equal(loaded.encoder.encode(feats), enc.encode(feats))


def test_file_layout_and_metadata(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, tiny_encoder(), "sd15")
    tensors, meta = tensors_and_metadata(path)
    assert meta["format"] == "nested_attention" and meta["format_version"] == "2" and meta["method"] == "nested"
    assert meta["base_family"] == "sd15" and meta["context_dim"] == "10"
    assert json.loads(meta["layers"]) == [["input_1_0", 8], ["middle_0_0", 12], ["output_3_1", 8]]
    assert meta["num_tokens"] == "4" and meta["image_feature_dim"] == "12"
    assert EncoderConfig.from_json(meta["encoder_config"]) == TINY
    assert tensors["nested.middle_0_0.to_v.weight"].shape == (12, 10)
    assert tensors["image_proj.latents"].shape == (1, 4, 16)
    assert all(k.startswith(("image_proj.", "nested.")) for k in tensors)


def test_fp16_file_loads_in_fp16(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, tiny_encoder().half(), "tiny")
    loaded = load_weights(path)
    assert {p.dtype for p in loaded.encoder.parameters()} == {torch.float16}


def test_describe_is_one_line(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, tiny_encoder(), "sd15")
    text = load_weights(path).describe()
    assert "\n" not in text and "SD1.5" in text and "3 layers" in text and "4 subject tokens" in text
    assert repr(load_weights(path)) == text


# ---- IP-Adapter Plus ----------------------------------------------------------------------------

def check_ip_import(loaded, proj, ip, order):
    assert loaded.source_format == "ip_adapter_plus"
    assert loaded.config == EncoderConfig(**IP_CFG)
    sd = loaded.encoder.state_dict()
    for k, t in proj.items():
        assert torch.equal(sd[f"resampler.{k}"], t), k
    for k, (layer_id, width) in enumerate(order):
        for ours, theirs in (("to_k", "to_k_ip"), ("to_v", "to_v_ip")):
            w = sd[f"nested_layers.{layer_id}.{ours}.weight"]
            assert w.shape == (width, IP_CFG["output_dim"])
            assert torch.equal(w, ip[f"{2 * k + 1}.{theirs}.weight"]), (layer_id, k)
    assert {layer.id: layer.width for layer in loaded.layers} == dict(order)


def test_ip_adapter_plus_sd15_safetensors_and_bin(tmp_path, ip_plus_shapes):
    proj, ip = ip_adapter_tensors(ip_plus_shapes, SD15_IP_ORDER)
    st = write_ip_safetensors(tmp_path / "ip-adapter-plus_sd15.safetensors", proj, ip)
    binary = tmp_path / "ip-adapter-plus_sd15.bin"
    torch.save({"image_proj": proj, "ip_adapter": ip}, binary)
    for path in (st, binary):
        loaded = load_weights(path)
        assert loaded.base_family == "sd15"
        check_ip_import(loaded, proj, ip, SD15_IP_ORDER)
        sd = loaded.encoder.state_dict()
        assert torch.equal(sd["nested_layers.input_1_0.to_k.weight"], ip["1.to_k_ip.weight"])
        assert torch.equal(sd["nested_layers.middle_0_0.to_v.weight"], ip["31.to_v_ip.weight"])
        assert torch.equal(sd["nested_layers.output_3_0.to_k.weight"], ip["13.to_k_ip.weight"])


def test_ip_adapter_plus_sdxl_order(tmp_path, ip_plus_shapes, caplog):
    proj, ip = ip_adapter_tensors(ip_plus_shapes, SDXL_IP_ORDER, seed=1)
    path = write_ip_safetensors(tmp_path / "ip-adapter-plus_sdxl.safetensors", proj, ip)
    with caplog.at_level(logging.WARNING):
        loaded = load_weights(path)
    assert loaded.base_family == "sdxl" and len(loaded.layers) == 70
    assert "token width 8" in caplog.text
    check_ip_import(loaded, proj, ip, SDXL_IP_ORDER)
    sd = loaded.encoder.state_dict()
    for number, layer_id in [(1, "input_4_0"), (9, "input_7_0"), (49, "output_0_0"), (109, "output_3_0"),
                             (121, "middle_0_0"), (139, "middle_0_9")]:
        assert torch.equal(sd[f"nested_layers.{layer_id}.to_k.weight"], ip[f"{number}.to_k_ip.weight"])


def test_imported_ip_adapter_resaves_in_our_format(tmp_path, ip_plus_shapes):
    proj, ip = ip_adapter_tensors(ip_plus_shapes, SD15_IP_ORDER)
    loaded = load_weights(write_ip_safetensors(tmp_path / "ip.safetensors", proj, ip))
    save_weights(tmp_path / "ours.safetensors", loaded.encoder, loaded.base_family)
    again = load_weights(tmp_path / "ours.safetensors")
    assert again.source_format == "nested_attention" and again.base_family == "sd15"
    assert {layer.id: layer.width for layer in again.layers} == dict(SD15_IP_ORDER)
    for k, t in loaded.encoder.state_dict().items():
        assert torch.equal(again.encoder.state_dict()[k], t)


def test_family_is_cross_checked_with_token_width(caplog):
    assert ip_adapter_file_family("f.safetensors", 16, 768).name == "sd15"
    assert ip_adapter_file_family("f.safetensors", 70, 2048).name == "sdxl"
    assert caplog.text == ""
    with pytest.raises(WeightsFormatError) as info:
        ip_adapter_file_family("f.safetensors", 70, 768)
    assert "SDXL" in str(info.value) and "SD1.5" in str(info.value) and "f.safetensors" in str(info.value)


# ---- bad files ----------------------------------------------------------------------------------

def good_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, tiny_encoder(), "tiny")
    return path


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "not found", "check the file name")


def test_truncated_file(tmp_path):
    path = good_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "truncated", "again")


def test_text_file_is_not_safetensors(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are not weights\n" * 20)
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "not a safetensors", "save_weights")


def test_pickle_zip_named_safetensors(tmp_path):
    path = tmp_path / "ip.safetensors"
    torch.save({"image_proj": {}, "ip_adapter": {}}, path)
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "zip/PyTorch checkpoint", ".bin")


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.pop("nested.middle_0_0.to_k.weight"), ("missing tensors", "nested.middle_0_0.to_k.weight")),
    (lambda t: t.update({"nested.output_9_0.to_k.weight": torch.ones(2, 10)}),
     ("unexpected tensors", "nested.output_9_0.to_k.weight")),
    (lambda t: t.update({"nested.input_1_0.to_v.weight": torch.ones(9, 10)}),
     ("nested.input_1_0.to_v.weight", "[9, 10]", "[8, 10]")),
], ids=["missing key", "extra key", "wrong shape"])
def test_tensor_layout_errors(tmp_path, edit, words):
    path = rewrite(good_file(tmp_path), edit_tensors=edit)
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, *words, "re-save")


@pytest.mark.parametrize("metadata, words", [
    ({"num_tokens": "5"}, ("num_tokens=5", "re-save")),
    ({"format_version": "3"}, ("format_version '3'", "newer Nested Attention node pack", "'1', '2'",
                               "update the node pack")),
    ({"format_version": "x"}, ("format_version 'x'", "'1', '2'", "save it again")),
    ({"method": "ip_adapter"}, ("method='ip_adapter'", "['decoupled', 'nested', 'single_token']", "update this one")),
    ({"format": "pt"}, ("'pt'", "save_weights")),
    ({"format": "nested_attention_subject"}, ("load_subject",)),
], ids=["disagrees with the config", "newer format version", "unknown format version", "unknown method",
        "other format", "a subject file"])
def test_metadata_errors(tmp_path, metadata, words):
    path = rewrite(good_file(tmp_path), edit_meta=lambda m: m.update(metadata))
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, *words)


def test_missing_format_metadata_of_our_file(tmp_path):
    path = good_file(tmp_path)
    tensors, _ = tensors_and_metadata(path)
    save_file(tensors, str(path))
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "no format metadata", "save_weights")


def test_non_plus_ip_adapter(tmp_path):
    path = tmp_path / "ip-adapter_sd15.safetensors"
    save_file({"image_proj.proj.weight": torch.ones(3072, 1024), "image_proj.norm.weight": torch.ones(768),
               "ip_adapter.1.to_k_ip.weight": torch.ones(320, 768)}, str(path))
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "IP-Adapter *Plus* file")


def test_ip_adapter_with_ten_layers(tmp_path, ip_plus_shapes):
    proj, ip = ip_adapter_tensors(ip_plus_shapes, SD15_IP_ORDER[:10])
    path = write_ip_safetensors(tmp_path / "ip10.safetensors", proj, ip)
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "10", "SD1.5 (16), SDXL (70)")


def test_ip_adapter_layer_width_must_match(tmp_path, ip_plus_shapes):
    order = list(SD15_IP_ORDER)
    order[6] = ("output_3_0", 640)  # ip_adapter.13 is 1280 wide in SD1.5
    proj, ip = ip_adapter_tensors(ip_plus_shapes, order)
    path = write_ip_safetensors(tmp_path / "ip.safetensors", proj, ip)
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "ip_adapter.13.to_k_ip.weight", "[640, 8]", "[1280, 8]", "download it again")


def test_bin_needing_full_pickle(tmp_path, ip_plus_shapes):
    proj, ip = ip_adapter_tensors(ip_plus_shapes, SD15_IP_ORDER)
    path = tmp_path / "ip.bin"
    torch.save({"image_proj": proj, "ip_adapter": ip, "args": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "weights_only", ".safetensors version")


def test_bin_with_other_layout_and_truncated_bin(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "'image_proj' and 'ip_adapter'", "state_dict")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert_names_file_and_fix(info, path, "not a readable PyTorch checkpoint", "download it again")
