"""Files the trainer writes get the mode of any new file: 0666 less the umask (safetensors creates them 0600, so a
ComfyUI that runs as another user could not read the weights)."""
from __future__ import annotations

import os
import stat

import pytest
import torch


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_weights_states_and_cache_entries_respect_the_umask(training, tmp_path, umask):
    """Measures the permission bits of a weights file, a training state and a feature-cache entry written under
    ``umask``: 0644 under 022, 0640 under 027 (they were 0600 for weights and cache entries)."""
    from nested_attention.nested_attention_core.encoder import EncoderConfig, SubjectEncoder
    from nested_attention.nested_attention_core.families import SD15
    from nested_attention.nested_attention_core.weights import save_weights
    from nested_attention.training.cache import FeatureCache
    from nested_attention.training.state import save_state, state_path

    encoder = SubjectEncoder(EncoderConfig(num_tokens=2, width=32, depth=1, heads=2, dim_head=16,
                                           image_feature_dim=32, output_dim=768), list(SD15.layers))
    previous = os.umask(umask)
    try:
        save_weights(tmp_path / "w.safetensors", encoder, "sd15")
        save_state(state_path(tmp_path / "states", 1), {"step": 1})
        cache = FeatureCache(tmp_path / "cache")
        cache.save("text", "ab" * 32, {"cond": torch.zeros(2)}, {})
    finally:
        os.umask(previous)
    written = [tmp_path / "w.safetensors", state_path(tmp_path / "states", 1),
               *(p for p in (tmp_path / "cache").rglob("*") if p.is_file())]
    assert len(written) == 3
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, (path, oct(path.stat().st_mode))
