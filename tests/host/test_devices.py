"""The nodes put the subject encoder where the host puts its own encoders.

The host's device functions (``comfy.model_management``) are pointed at the ``meta`` device, the
one device a CPU-only machine has besides the CPU: what lands there was put there by the pack
following the host's choice. ``load_models_gpu`` is replaced by a recorder that loads each model
with the model's own ``ModelPatcher.patch_model`` (the host's real one needs memory figures of a
real accelerator). The last test runs the real host functions on the CPU.
"""
from types import SimpleNamespace

import pytest
import torch

FEATURE_DIM = 12
META, CPU = torch.device("meta"), torch.device("cpu")


@pytest.fixture(scope="module")
def nodes(host, tmp_path_factory):
    """The pack's nodes, with a tiny weights file in models/nested_attention."""
    import folder_paths

    from nested_attention.nested_attention_core.encoder import EncoderConfig, SubjectEncoder
    from nested_attention.nested_attention_core.layers import LayerSpec
    from nested_attention.nested_attention_core.weights import save_weights
    from nested_attention.nodes import extension

    extension.register_model_folders()
    folder = tmp_path_factory.mktemp("nested_attention")
    folder_paths.add_model_folder_path("nested_attention", str(folder))
    config = EncoderConfig(num_tokens=2, width=16, depth=1, heads=2, dim_head=8, ff_mult=2,
                           image_feature_dim=FEATURE_DIM, output_dim=8)
    torch.manual_seed(0)
    save_weights(folder / "devices_tiny.safetensors", SubjectEncoder(config, [LayerSpec("input", 1, 0, 16)]), "tiny")
    return extension


def clip_vision_stub():
    """CLIP vision's encode_image: penultimate features [B, 5, F] on the CPU (where the host puts them)."""
    def encode_image(pixels, crop=True):
        return {"penultimate_hidden_states": pixels.mean((1, 2, 3))[:, None, None].expand(-1, 5, FEATURE_DIM).cpu()}
    return SimpleNamespace(encode_image=encode_image)


@pytest.fixture
def devices(monkeypatch, host):
    """The host's device functions, pointed where a test says; loads recorded."""
    import comfy.model_management as mm

    loads = []

    def load_models_gpu(models, **options):
        loads.append(([m for m in models], options))
        for patcher in models:
            patcher.patch_model(device_to=patcher.load_device)

    monkeypatch.setattr(mm, "load_models_gpu", load_models_gpu)

    def point(offload=CPU, load=CPU, intermediate=CPU):
        monkeypatch.setattr(mm, "text_encoder_offload_device", lambda: offload)
        monkeypatch.setattr(mm, "text_encoder_device", lambda: load)
        monkeypatch.setattr(mm, "intermediate_device", lambda: intermediate)
    return SimpleNamespace(point=point, loads=loads)


def run(node, *args):
    return node.execute(*args).args[0]


def test_the_loader_keeps_weights_on_the_offload_device_with_a_patcher_for_the_load_device(nodes, devices):
    devices.point(offload=META, load=CPU)
    weights = run(nodes.NestedAttentionLoader, "devices_tiny.safetensors")
    assert {p.device for p in weights.encoder.parameters()} == {META}
    assert (weights.patcher.load_device, weights.patcher.offload_device) == (CPU, META)
    assert weights.patcher.model is weights.encoder and not devices.loads  # nothing loaded before it is used


@pytest.mark.parametrize("load, intermediate", [(META, META), (CPU, META)], ids=["load meta", "load cpu"])
def test_the_subject_node_encodes_on_the_load_device_and_hands_out_on_the_intermediate_one(nodes, devices, load,
                                                                                          intermediate):
    devices.point(offload=CPU, load=load, intermediate=intermediate)
    weights = run(nodes.NestedAttentionLoader, "devices_tiny.safetensors")
    seen = []
    weights.encoder.resampler.register_forward_pre_hook(lambda module, args: seen.append(args[0].device))
    subject = run(nodes.NestedAttentionSubject, weights, clip_vision_stub(), torch.rand(2, 16, 16, 3), "dog")
    (loaded, options), = devices.loads
    assert loaded == [weights.patcher] and options.get("force_full_load") is True
    assert seen == [load]  # the encoder ran where the host loaded it
    assert {t.device for t in (subject.tokens, *(x for kv in subject.nested.values() for x in kv))} == {intermediate}


def test_load_subject_hands_out_on_the_intermediate_device(nodes, devices, tmp_path):
    import folder_paths

    from nested_attention.nested_attention_core.subject import NestedSubject, save_subject

    folder_paths.add_model_folder_path("nested_attention_subjects", str(tmp_path))
    nested = {"input_1_0": (torch.ones(2, 16), torch.ones(2, 16))}
    save_subject(tmp_path / "devices_dog.safetensors", NestedSubject("dog", torch.ones(2, 8), nested, "tiny", 8))
    devices.point(intermediate=META)
    subject = run(nodes.NestedAttentionLoadSubject, "devices_dog.safetensors")
    assert subject.tokens.device == META and subject.nested["input_1_0"][1].device == META


def test_on_the_real_host_functions_the_host_manages_the_encoder(nodes, host):
    """No fakes (CPU): the host's model management lists the encoder as loaded after encoding, and the
    subject is the core's encoding of the same features."""
    import comfy.model_management as mm

    from nested_attention.nested_attention_core.subject import encode_subject

    weights = run(nodes.NestedAttentionLoader, "devices_tiny.safetensors")
    images = torch.rand(2, 16, 16, 3)
    subject = run(nodes.NestedAttentionSubject, weights, clip_vision_stub(), images, "dog")
    assert any(model is weights.patcher for model in mm.loaded_models())
    features = clip_vision_stub().encode_image(images)["penultimate_hidden_states"]
    expected = encode_subject(weights.encoder, features, "dog", "tiny")
    assert subject.tokens.device == CPU and torch.equal(subject.tokens, expected.tokens)
    assert all(torch.equal(subject.nested[k][1], expected.nested[k][1]) for k in expected.nested)
