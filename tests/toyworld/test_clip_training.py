"""The toy CLIP (clip_training.py): it learns, and its towers go where ComfyUI reads them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nested_attention.toyworld.clip_training import ClipTrainConfig, linear_probe, train_clip
from nested_attention.toyworld.dataset import make_samples, render_array
from nested_attention.toyworld.description import described_caption
from nested_attention.toyworld.identity import sample_identity

TABLE = "clip_l.transformer.text_model.embeddings.token_embedding.weight"


@pytest.fixture(scope="module")
def trained(host):
    from nested_attention.toyworld.base_pipeline import world_captions

    samples = make_samples(["person", "pet"], range(24), 2, seed=3)
    images = render_array(samples)
    captions = [described_caption(sample_identity(s.domain, s.identity_id), s.scene.without_look()) for s in samples]
    looks = [described_caption(sample_identity(s.domain, s.identity_id), s.scene) for s in samples]
    config = ClipTrainConfig(steps=40, batch=32, warmup=4, lr=2e-3, same_scene=1)
    tower, text_state, losses = train_clip(images, captions, [s.scene for s in samples], world_captions(), config,
                                           look_captions=looks)
    return images, captions, tower, text_state, losses


def _row_cosine(text_state, word: str) -> float:
    """Cosine between a word's trained token embedding and its initial one (weight decay alone keeps it 1)."""
    from nested_attention.toyworld.base_model import new_text_encoder_state
    from nested_attention.toyworld.base_pipeline import world_captions
    from nested_attention.toyworld.clip_training import caption_tokens

    token = int(caption_tokens([word])[0, 1])
    initial = new_text_encoder_state(world_captions(), ClipTrainConfig().seed)[TABLE][token]
    return float(torch.nn.functional.cosine_similarity(text_state[TABLE][token], initial, dim=0))


def test_the_look_term_teaches_the_text_tower_the_look_words(trained, host):
    """Without the look term no caption holds "shirt" or "crown": their rows kept their random
    direction, and the base UNet read them as noise (run 8: shirt colour followed at chance)."""
    from nested_attention.toyworld.base_pipeline import world_captions

    samples = make_samples(["person", "pet"], range(24), 2, seed=3)
    captions = [described_caption(sample_identity(s.domain, s.identity_id), s.scene.without_look()) for s in samples]
    config = ClipTrainConfig(steps=40, batch=32, warmup=4, lr=2e-3, same_scene=1, look_term=False)
    _, without, _ = train_clip(render_array(samples), captions, [s.scene for s in samples], world_captions(), config)
    for word in ("shirt", "crown"):
        assert 1 - _row_cosine(without, word) < 1e-7  # measured 0.0: weight decay only scales the row
        assert 1 - _row_cosine(trained[3], word) > 1e-5  # measured 6e-5 for "shirt" in 40 steps


def test_the_look_term_without_look_captions_names_the_fix(host):
    with pytest.raises(ValueError, match="look_captions=, or set look_term=False"):
        train_clip(np.zeros((2, 64, 64, 3), np.uint8), ["a", "b"], [0, 0], [], ClipTrainConfig(steps=1, batch=2))


def test_the_contrastive_loss_falls(trained):
    losses = trained[4]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_matching_captions_score_highest_after_training(trained):
    from nested_attention.toyworld.base_model import toy_text_encoder
    from nested_attention.toyworld.clip_training import caption_tokens, pixel_values

    images, captions, tower, text_state, _ = trained
    text = toy_text_encoder(text_state).clip_l.transformer
    with torch.no_grad():
        image_embeds = tower.model(pixel_values=pixel_values(tower, images[:32]))[2]
        text_embeds = text(input_tokens=caption_tokens(captions[:32]))[2]
    similarity = torch.nn.functional.normalize(image_embeds, dim=-1) @ torch.nn.functional.normalize(text_embeds, dim=-1).T
    top1 = float((similarity.argmax(1) == torch.arange(32)).double().mean())
    assert top1 > 4 / 32  # chance: 1/32


def test_the_towers_load_through_comfyui_and_words_outside_the_world_stay_empty(trained, tmp_path):
    from nested_attention.toyworld.base_model import load_clip_vision, save_file
    from nested_attention.toyworld.base_pipeline import world_captions
    from nested_attention.toyworld.base_model import new_text_encoder_state

    _, _, tower, text_state, _ = trained
    path = save_file(tower.model.state_dict(), tmp_path / "clip_vision.safetensors", {"toyworld": "test"})
    loaded = load_clip_vision(path)
    features = loaded.encode_image(torch.rand(2, 64, 64, 3))["penultimate_hidden_states"]
    assert features.shape == (2, 65, 64)  # the toy tower's 8 px patches + the class token
    initial = new_text_encoder_state(world_captions(), ClipTrainConfig().seed)[TABLE]
    in_world = initial.abs().sum(1) > 0
    assert (text_state[TABLE][~in_world] == 0).all()
    assert not torch.equal(text_state[TABLE][in_world], initial[in_world])  # the world's words were trained


def test_linear_probe_reads_a_separable_label_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = (x[:, 0] > 0).long()
    assert linear_probe(x[:300], y[:300], x[300:], y[300:], 2) > 0.95
    noise = torch.randint(0, 4, (400,), generator=g)
    assert linear_probe(x[:300], noise[:300], x[300:], noise[300:], 4) < 0.45


def test_batches_hold_few_scenes_with_several_images_each():
    from nested_attention.toyworld.clip_training import scene_batches

    scenes = [n % 10 for n in range(400)]
    batches = scene_batches(scenes, ClipTrainConfig(batch=32, same_scene=8), torch.Generator().manual_seed(0))
    for _ in range(20):
        idx = next(batches)
        assert len(idx) == 32 and len(set(idx.tolist())) == 32
        groups = {}
        for i in idx.tolist():
            groups.setdefault(scenes[i], []).append(i)
        assert len(groups) == 4 and all(len(g) == 8 for g in groups.values())
