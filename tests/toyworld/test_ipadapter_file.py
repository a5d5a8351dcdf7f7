"""The decoupled baseline written as an IP-Adapter Plus file and read back by the Loader's function
(``load_node_weights``): the same tokens and the same per-layer keys/values, now as nested attention weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nested_attention.toyworld.evaluation_inputs import reference
from nested_attention.toyworld.ipadapter_file import ip_adapter_tensors, through_ip_adapter_file
from nested_attention.toyworld.publish import BASE_FILES, COMMITTED_WEIGHTS, load_methods


@pytest.fixture(scope="module")
def host():
    from nested_attention.toyworld.generation import ToyHost

    return ToyHost.load(COMMITTED_WEIGHTS / BASE_FILES["checkpoint"], COMMITTED_WEIGHTS / BASE_FILES["clip_vision"])


def test_the_file_has_ip_adapter_plus_keys_in_processor_order():
    _, encoder = load_methods(COMMITTED_WEIGHTS)["decoupled cross-attention"]
    tensors = ip_adapter_tensors(encoder)
    assert "image_proj.latents" in tensors
    assert sorted(k for k in tensors if k.startswith("ip_adapter.")) == sorted(
        f"ip_adapter.{2 * n + 1}.{p}.weight" for n in range(7) for p in ("to_k_ip", "to_v_ip"))
    # processor order: input blocks, output blocks, then the middle block (last)
    assert torch.equal(tensors["ip_adapter.13.to_k_ip.weight"], encoder.nested_layers["middle_0_0"].to_k.weight)


def test_the_loader_reads_it_as_nested_weights_that_give_the_decoupled_subject(host, tmp_path):
    from nested_attention.training.method import method_named

    decoupled, encoder = load_methods(COMMITTED_WEIGHTS)["decoupled cross-attention"]
    loaded = through_ip_adapter_file(encoder, tmp_path)
    assert (loaded.method, loaded.source_format, loaded.base_family) == ("nested", "ip_adapter_plus", "toyworld")
    assert (loaded.config.heads, loaded.config.dim_head) == (encoder.config.heads, encoder.config.dim_head)
    image = np.asarray(reference("person", 1800).image)[None]
    theirs = host.subject(decoupled, encoder, image, "person")
    ours = host.subject(method_named("nested"), loaded.encoder.float(), image, "person")
    assert ours.method == "nested" and theirs.method == "decoupled"
    assert torch.allclose(ours.tokens, theirs.tokens, atol=1e-5)
    for layer, (k, v) in theirs.nested.items():
        assert torch.allclose(ours.nested[layer][0], k, atol=1e-5) and torch.allclose(ours.nested[layer][1], v, atol=1e-5)


def test_an_encoder_no_ip_adapter_file_can_hold_leaves_the_row_out_with_a_notice(host, tmp_path, caplog):
    from nested_attention.nested_attention_core.encoder import EncoderConfig, SubjectEncoder
    from nested_attention.toyworld.evaluation import IP_ADAPTER_ROW
    from nested_attention.toyworld.family import TOY_FAMILY
    from nested_attention.toyworld.publish import with_ip_adapter_row

    methods = load_methods(COMMITTED_WEIGHTS)
    assert set(with_ip_adapter_row(methods, tmp_path)) == {*methods, IP_ADAPTER_ROW}
    # the smoke preset's encoder: 2 heads of 16, an attention width IP-Adapter's 64 per head cannot split
    small = SubjectEncoder(EncoderConfig(num_tokens=2, width=32, depth=1, heads=2, dim_head=16, ff_mult=2,
                                         image_feature_dim=64, output_dim=64), list(TOY_FAMILY.layers))
    methods["decoupled cross-attention"] = (methods["decoupled cross-attention"][0], small)
    assert with_ip_adapter_row(methods, tmp_path / "small") == methods
    assert f"leaves out the row '{IP_ADAPTER_ROW}'" in caplog.text
