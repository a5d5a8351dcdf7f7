"""Shared fixtures of the core tests (pure torch: no ComfyUI)."""
import pytest


def _ip_adapter_plus_resampler_shapes(num_tokens, width, depth, heads, dim_head, ff_mult,
                                      image_feature_dim, output_dim):
    """IP-Adapter Plus ``image_proj.*`` keys (without the prefix) and shapes, written out by hand."""
    inner = heads * dim_head
    shapes = {
        "latents": (1, num_tokens, width),
        "proj_in.weight": (width, image_feature_dim),
        "proj_in.bias": (width,),
        "proj_out.weight": (output_dim, width), "proj_out.bias": (output_dim,),
        "norm_out.weight": (output_dim,), "norm_out.bias": (output_dim,),
    }
    for i in range(depth):
        shapes.update({
            f"layers.{i}.0.norm1.weight": (width,), f"layers.{i}.0.norm1.bias": (width,),
            f"layers.{i}.0.norm2.weight": (width,), f"layers.{i}.0.norm2.bias": (width,),
            f"layers.{i}.0.to_q.weight": (inner, width),
            f"layers.{i}.0.to_kv.weight": (2 * inner, width),
            f"layers.{i}.0.to_out.weight": (width, inner),
            f"layers.{i}.1.0.weight": (width,), f"layers.{i}.1.0.bias": (width,),
            f"layers.{i}.1.1.weight": (width * ff_mult, width),
            f"layers.{i}.1.3.weight": (width, width * ff_mult),
        })
    return shapes


@pytest.fixture
def ip_plus_shapes():
    return _ip_adapter_plus_resampler_shapes
