import math

import pytest
import torch

from nested_attention.nested_attention_core.encoder import EncoderConfig, Resampler, SubjectEncoder
from nested_attention.nested_attention_core.errors import ModelMismatchError, NestedAttentionError
from nested_attention.nested_attention_core.families import SD15, SDXL, family_named
from nested_attention.nested_attention_core.layers import LayerSpec

TINY = dict(num_tokens=4, width=16, depth=2, heads=2, dim_head=8, ff_mult=2, image_feature_dim=12,
            output_dim=10)
TINY_LAYERS = [LayerSpec("input", 1, 0, 8), LayerSpec("middle", 0, 0, 12), LayerSpec("output", 3, 1, 8)]


def randomised(module, seed=0):
    """Every parameter random (LayerNorm weights too), so swapped or skipped parts change the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return module


# ---- naive float64 reference, written from the IP-Adapter Plus description --------------------

def _layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def reference_resampler(sd, cfg, feats):
    heads, d = cfg["heads"], cfg["dim_head"]
    inner = heads * d
    out = []
    for b in range(feats.shape[0]):
        x = feats[b] @ sd["proj_in.weight"].T + sd["proj_in.bias"]  # [T, width]
        lat = sd["latents"][0].clone()  # [N, width]
        for i in range(cfg["depth"]):
            p = f"layers.{i}."
            xn = _layer_norm(x, sd[p + "0.norm1.weight"], sd[p + "0.norm1.bias"])
            ln = _layer_norm(lat, sd[p + "0.norm2.weight"], sd[p + "0.norm2.bias"])
            q = ln @ sd[p + "0.to_q.weight"].T
            kv = torch.cat([xn, ln]) @ sd[p + "0.to_kv.weight"].T
            k, v = kv[:, :inner], kv[:, inner:]
            att = torch.zeros(lat.shape[0], inner, dtype=torch.float64)
            for h in range(heads):
                cols = slice(h * d, (h + 1) * d)
                for n in range(lat.shape[0]):
                    scores = torch.tensor([float(q[n, cols] @ k[j, cols]) / math.sqrt(d) for j in range(k.shape[0])],
                                          dtype=torch.float64)
                    w = torch.exp(scores - scores.max())
                    w = w / w.sum()
                    att[n, cols] = (w[:, None] * v[:, cols]).sum(0)
            lat = att @ sd[p + "0.to_out.weight"].T + lat
            y = _layer_norm(lat, sd[p + "1.0.weight"], sd[p + "1.0.bias"])
            y = _gelu(y @ sd[p + "1.1.weight"].T) @ sd[p + "1.3.weight"].T
            lat = y + lat
        y = lat @ sd["proj_out.weight"].T + sd["proj_out.bias"]
        out.append(_layer_norm(y, sd["norm_out.weight"], sd["norm_out.bias"]))
    return torch.stack(out)


def test_resampler_matches_naive_reference():
    cfg = EncoderConfig(**TINY)
    model = randomised(Resampler(cfg)).double()
    feats = torch.randn(2, 7, TINY["image_feature_dim"], dtype=torch.float64)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    expected = reference_resampler(sd, TINY, feats)
    got = model(feats)
    assert got.shape == (2, TINY["num_tokens"], TINY["output_dim"])
    assert torch.allclose(got, expected, atol=1e-9, rtol=0), (got - expected).abs().max()


def test_resampler_float32_close_to_reference():
    cfg = EncoderConfig(**TINY)
    model = randomised(Resampler(cfg), seed=3)
    feats = torch.randn(1, 5, TINY["image_feature_dim"])
    sd = {k: v.detach().double() for k, v in model.state_dict().items()}
    expected = reference_resampler(sd, TINY, feats.double())
    assert (model(feats).double() - expected).abs().max() < 1e-4


def test_resampler_state_dict_is_ip_adapter_plus_layout(ip_plus_shapes):
    model = Resampler(EncoderConfig(**TINY))
    expected = ip_plus_shapes(**TINY)
    assert list(model.state_dict()) == list(expected)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_sdxl_and_sd15_defaults_have_ip_adapter_plus_shapes(ip_plus_shapes):
    for family, (width, heads, out) in {"sdxl": (1280, 20, 2048), "sd15": (768, 12, 768)}.items():
        cfg = family_named(family).encoder
        assert (cfg.width, cfg.heads, cfg.dim_head, cfg.output_dim, cfg.num_tokens) == (width, heads, 64, out, 16)
        with torch.device("meta"):
            model = Resampler(cfg)
        expected = ip_plus_shapes(16, width, 4, heads, 64, 4, 1280, out)
        assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_subject_encoder_shapes_and_nested_projection():
    enc = randomised(SubjectEncoder(EncoderConfig(**TINY), TINY_LAYERS))
    assert enc.config == EncoderConfig(**TINY) and enc.layers == TINY_LAYERS
    assert sorted(enc.nested_layers) == sorted(layer.id for layer in TINY_LAYERS)
    tokens = enc.encode(torch.randn(3, 6, 12))
    assert tokens.shape == (3, 4, 10)
    for shape in [(5, 10), (2, 5, 10)]:
        e = torch.randn(shape)
        nested = enc.nested_keys_values(e)
        assert list(nested) == [layer.id for layer in TINY_LAYERS]
        for layer in TINY_LAYERS:
            k, v = nested[layer.id]
            wk = enc.state_dict()[f"nested_layers.{layer.id}.to_k.weight"]
            wv = enc.state_dict()[f"nested_layers.{layer.id}.to_v.weight"]
            assert wk.shape == (layer.width, 10)
            assert k.shape == shape[:-1] + (layer.width,)
            assert torch.allclose(k, e @ wk.T, atol=1e-6) and torch.allclose(v, e @ wv.T, atol=1e-6)
            assert not torch.allclose(k, v)


def test_nested_projection_has_no_bias():
    enc = SubjectEncoder(EncoderConfig(**TINY), TINY_LAYERS)
    nested_keys = [k for k in enc.state_dict() if k.startswith("nested_layers.")]
    assert nested_keys == [f"nested_layers.{layer.id}.{p}.weight" for layer in TINY_LAYERS for p in ("to_k", "to_v")]


def test_progress_called_per_layer():
    enc = SubjectEncoder(EncoderConfig(**TINY), TINY_LAYERS)
    calls = []
    enc.nested_keys_values(torch.randn(4, 10), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_gradients_reach_resampler_and_every_nested_projection():
    enc = randomised(SubjectEncoder(EncoderConfig(**TINY), TINY_LAYERS))
    nested = enc.nested_keys_values(enc.encode(torch.randn(2, 6, 12)))
    loss = sum((k * torch.randn_like(k)).sum() + (v * torch.randn_like(v)).sum() for k, v in nested.values())
    loss.backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_wrong_image_feature_width_names_both_widths():
    enc = SubjectEncoder(EncoderConfig(**TINY), TINY_LAYERS)
    with pytest.raises(ModelMismatchError) as info:
        enc.encode(torch.randn(1, 6, 20))
    msg = str(info.value)
    assert "20" in msg and "12" in msg and "CLIP vision model these weights were trained with" in msg


def test_wrong_token_width_in_nested_keys_values():
    enc = SubjectEncoder(EncoderConfig(**TINY), TINY_LAYERS)
    with pytest.raises(ModelMismatchError, match=r"\[M, 10\]"):
        enc.nested_keys_values(torch.randn(4, 11))


def test_config_json_round_trip_and_families():
    cfg = EncoderConfig(**TINY)
    assert EncoderConfig.from_json(cfg.to_json()) == cfg
    assert SDXL.encoder == EncoderConfig()
    assert SD15.encoder.output_dim == SD15.context_dim == 768 and SDXL.encoder.output_dim == SDXL.context_dim
    assert family_named("flux") is None


@pytest.mark.parametrize("field,value", [("width", 0), ("heads", -2), ("depth", 1.5), ("num_tokens", True),
                                         ("output_dim", "768")])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(NestedAttentionError, match=f"EncoderConfig.{field}"):
        EncoderConfig(**{field: value})


def test_config_from_json_rejects_unknown_fields_and_bad_json():
    with pytest.raises(NestedAttentionError, match="unknown fields.*colour"):
        EncoderConfig.from_json('{"colour": 3}')
    with pytest.raises(NestedAttentionError, match="not valid JSON"):
        EncoderConfig.from_json("{width: 3")


def test_subject_encoder_rejects_duplicate_or_no_layers():
    with pytest.raises(NestedAttentionError, match="duplicate layer ids.*input_1_0"):
        SubjectEncoder(EncoderConfig(**TINY), [LayerSpec("input", 1, 0, 8), LayerSpec("input", 1, 0, 8)])
    with pytest.raises(NestedAttentionError, match="at least one"):
        SubjectEncoder(EncoderConfig(**TINY), [])


def test_sd15_encoder_builds_one_projection_per_layer():
    with torch.device("meta"):
        enc = SubjectEncoder(SD15.encoder, list(SD15.layers))
    assert len(enc.nested_layers) == 16
    assert enc.nested_layers["middle_0_0"].to_k.weight.shape == (1280, 768)
