"""The nodes in-process, from real files on disk to a KSampler result, and their bad-input errors."""
import pytest
import torch

from nested_attention.nested_attention_core import (ModelMismatchError, NestedAttentionError, ReferenceImageError,
                                                    WeightsFormatError)
from nested_attention.nested_attention_core.encoder import EncoderConfig, SubjectEncoder
from nested_attention.nested_attention_core.weights import save_weights


@pytest.fixture(scope="module")
def env(host, tiny_models, tmp_path_factory):
    """Tiny models loaded by the host's own loaders; our weights written for each into a models folder."""
    import comfy.clip_vision
    import comfy.sd
    import folder_paths
    import nodes as host_nodes

    from nested_attention.nodes import extension as ours

    ours.register_model_folders()
    clip_vision = comfy.clip_vision.load(str(tiny_models["clip_vision"]))
    feature_dim = clip_vision.encode_image(torch.rand(1, 32, 32, 3))["penultimate_hidden_states"].shape[-1]
    weights_dir = tmp_path_factory.mktemp("nested_attention")
    folder_paths.add_model_folder_path("nested_attention", str(weights_dir))
    models = {}
    for family in ("sd15", "sdxl"):
        model, clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models[family]), output_vae=False)
        model_family = host.model_family(model)
        config = EncoderConfig(num_tokens=4, width=32, depth=1, heads=2, dim_head=16, image_feature_dim=feature_dim,
                               output_dim=model_family.context_dim)
        torch.manual_seed(0)
        encoder = SubjectEncoder(config, list(model_family.layers))
        with torch.no_grad():
            for p in encoder.nested_layers.parameters():
                p.mul_(30.0)  # random weights strong enough to see the subject in a few steps
        save_weights(weights_dir / f"tiny_{family}.safetensors", encoder, model_family.name)
        models[family] = (model, clip)
    return ours, host_nodes, clip_vision, models


def run(node, *args, **kwargs):
    return node.execute(*args, **kwargs).args[0]


def reference_images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 37, 29, 3, generator=g)  # two references of one subject, odd size


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_nodes_end_to_end_change_the_sample(env, family):
    ours, host_nodes, clip_vision, models = env
    model, clip = models[family]
    weights = run(ours.NestedAttentionLoader, f"tiny_{family}.safetensors")
    subject = run(ours.NestedAttentionSubject, weights, clip_vision, reference_images(), "Person")
    assert subject.word == "person" and subject.tokens.shape[0] == 2 * weights.config.num_tokens
    positive = run(ours.NestedAttentionTextEncode, clip, "a photo of a person in the snow")
    negative = host_nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    patched = run(ours.ApplyNestedAttention, model, subject, 1.0, 0.0, 1.0)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    sample = lambda m: host_nodes.common_ksampler(m, 3, 3, 4.0, "euler", "normal", positive, negative, latent)[0]["samples"]
    assert (sample(patched) - sample(model)).abs().max() > 1e-2


def test_region_mask_limits_where_the_subject_acts(env):
    ours, host_nodes, clip_vision, models = env
    model, clip = models["sd15"]
    weights = run(ours.NestedAttentionLoader, "tiny_sd15.safetensors")
    subject = run(ours.NestedAttentionSubject, weights, clip_vision, reference_images(), "person")
    positive = run(ours.NestedAttentionTextEncode, clip, "a person")
    negative = host_nodes.CLIPTextEncode().encode(clip, "")[0]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    sample = lambda m: host_nodes.common_ksampler(m, 3, 3, 4.0, "euler", "normal", positive, negative, latent)[0]["samples"]
    nowhere = run(ours.ApplyNestedAttention, model, subject, 1.0, 0.0, 1.0, attn_mask=torch.zeros(40, 40))
    assert torch.equal(sample(nowhere), sample(model))  # outside the region the original value is kept exactly
    left = torch.zeros(1, 40, 40)
    left[..., :20] = 1
    half = sample(run(ours.ApplyNestedAttention, model, subject, 1.0, 0.0, 1.0, attn_mask=left))
    full = sample(run(ours.ApplyNestedAttention, model, subject, 1.0, 0.0, 1.0))
    assert (half - sample(model)).abs().max() > 1e-3 and (half - full).abs().max() > 1e-3


def test_reference_with_alpha_grayscale_and_mask_of_another_size(env):
    ours, _, clip_vision, _ = env
    weights = run(ours.NestedAttentionLoader, "tiny_sd15.safetensors")
    rgba = torch.rand(1, 50, 41, 4)
    gray = torch.rand(1, 23, 64, 1)
    for image in (rgba, gray):
        subject = run(ours.NestedAttentionSubject, weights, clip_vision, image, "dog")
        assert subject.tokens.shape[0] == weights.config.num_tokens
    masked = run(ours.NestedAttentionSubject, weights, clip_vision, rgba[..., :3], "dog", mask=torch.ones(1, 7, 9))
    unmasked = run(ours.NestedAttentionSubject, weights, clip_vision, rgba[..., :3], "dog")
    torch.testing.assert_close(masked.tokens, unmasked.tokens)  # an all-subject mask changes nothing


def test_sd15_weights_on_sdxl_model_say_which_is_which(env):
    ours, _, clip_vision, models = env
    weights = run(ours.NestedAttentionLoader, "tiny_sd15.safetensors")
    subject = run(ours.NestedAttentionSubject, weights, clip_vision, reference_images(), "person")
    with pytest.raises(ModelMismatchError, match=r"subject 'person' \(from weights tiny_sd15\.safetensors\) was made "
                                                 r"for the tests' one-level SD1\.5 \(4 cross-attention .* but the model is "
                                                 r"the tests' tiny SDXL .*context width 144"):
        run(ours.ApplyNestedAttention, models["sdxl"][0], subject, 1.0, 0.0, 1.0)


@pytest.mark.parametrize("name, value", [("weight", float("nan")), ("weight", float("inf")), ("start_at", float("nan")),
                                         ("end_at", float("-inf"))])
def test_non_finite_numbers_at_apply_are_named(env, name, value):
    ours, _, clip_vision, models = env
    weights = run(ours.NestedAttentionLoader, "tiny_sd15.safetensors")
    subject = run(ours.NestedAttentionSubject, weights, clip_vision, reference_images(), "person")
    numbers = {"weight": 1.0, "start_at": 0.0, "end_at": 1.0, name: value}
    with pytest.raises(NestedAttentionError, match=rf"Apply Nested Attention: {name} is .*give a finite number"):
        run(ours.ApplyNestedAttention, models["sd15"][0], subject, **numbers)
    region = torch.full((1, 8, 8), float("nan"))
    with pytest.raises(NestedAttentionError, match=r"region mask \(attn_mask\) .* NaN"):
        run(ours.ApplyNestedAttention, models["sd15"][0], subject, 1.0, 0.0, 1.0, attn_mask=region)


def test_nan_reference_image_and_nan_weights_file_are_named(env, tmp_path):
    ours, _, clip_vision, _ = env
    import folder_paths
    from fixtures.files import rewrite

    weights = run(ours.NestedAttentionLoader, "tiny_sd15.safetensors")
    image = reference_images()
    image[0, 3, 4, 1] = float("nan")
    with pytest.raises(ReferenceImageError, match="NaN or infinite pixel values"):
        run(ours.NestedAttentionSubject, weights, clip_vision, image, "person")
    broken = tmp_path / "diverged.safetensors"
    broken.write_bytes(open(weights.path, "rb").read())
    rewrite(broken, edit_tensors=lambda t: t["image_proj.latents"].fill_(float("nan")))
    folder_paths.add_model_folder_path("nested_attention", str(tmp_path))
    with pytest.raises(WeightsFormatError, match=r"diverged\.safetensors: tensors \['image_proj\.latents'\] hold NaN"):
        run(ours.NestedAttentionLoader, "diverged.safetensors")


def test_clip_vision_of_another_width_is_a_clear_error(env, host, tmp_path):
    ours, _, clip_vision, models = env
    model, _ = models["sd15"]
    adapter_layers = host.model_layers(model)
    config = EncoderConfig(num_tokens=4, width=32, depth=1, heads=2, dim_head=16, image_feature_dim=1280, output_dim=768)
    save_weights(tmp_path / "vit_h.safetensors", SubjectEncoder(config, adapter_layers), "sd15")
    import folder_paths

    folder_paths.add_model_folder_path("nested_attention", str(tmp_path))
    weights = run(ours.NestedAttentionLoader, "vit_h.safetensors")
    with pytest.raises(ModelMismatchError, match="expects 1280; use the CLIP vision model"):
        run(ours.NestedAttentionSubject, weights, clip_vision, reference_images(), "person")


def test_corrupt_weights_file_names_the_file(env, tmp_path):
    ours = env[0]
    import folder_paths

    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    folder_paths.add_model_folder_path("nested_attention", str(tmp_path))
    with pytest.raises(WeightsFormatError, match="broken.safetensors"):
        run(ours.NestedAttentionLoader, "broken.safetensors")


def test_save_and_load_subject_round_trip(env, tmp_path):
    ours, _, clip_vision, _ = env
    import folder_paths

    folder_paths.add_model_folder_path("nested_attention_subjects", str(tmp_path), is_default=True)
    weights = run(ours.NestedAttentionLoader, "tiny_sd15.safetensors")
    subject = run(ours.NestedAttentionSubject, weights, clip_vision, reference_images(), "person")
    first = ours.NestedAttentionSaveSubject.execute(subject, "me").ui["text"][0]
    second = ours.NestedAttentionSaveSubject.execute(subject, "me").ui["text"][0]
    assert first != second  # a counter, never an overwrite
    loaded = run(ours.NestedAttentionLoadSubject, second)
    assert loaded.word == "person" and torch.equal(loaded.tokens, subject.tokens)
    assert all(torch.equal(loaded.nested[k][1], subject.nested[k][1]) for k in subject.nested)
