"""The trainer end to end on the tiny SDXL model: files it writes, learning, resume, torchrun, cache, stops."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
import torch


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_end_to_end_weights_load_in_the_nodes_and_change_the_sample(training, sdxl_models, helpers, tiny_models,
                                                                   tmp_path):
    import folder_paths
    import nodes as host_nodes
    from nested_attention.training.loop import train
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"alice": 3, "rex": 2}, words={"alice": "woman", "rex": "dog"})
    (data / "alice" / "999.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # unreadable: skipped and counted
    (data / "alice" / "999.txt").write_text("a woman")
    out = tmp_path / "out"
    config = helpers.tiny_config(tiny_models, data, out, max_steps=24, save_every=12, sample_every=12, sample_steps=2,
                                 sample_count=1, log_every=4)
    frozen = [sdxl_models.patcher.model, sdxl_models.clip.cond_stage_model, sdxl_models.vae.first_stage_model,
              sdxl_models.clip_vision.model]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in frozen]
    result = train(open_session(config, models=sdxl_models))
    for module, state in zip(frozen, before):  # frozen: no gradients, eval mode, unchanged
        assert not module.training and not any(p.requires_grad for p in module.parameters())
        for key, value in module.state_dict().items():  # (an unused CLIP-L projection holds uninitialised NaNs)
            torch.testing.assert_close(value, state[key], rtol=0, atol=0, equal_nan=True, msg=key)

    assert result.status == "finished" and result.step == 24
    assert result.weights == out / "nested_attention_sdxl_tiny.safetensors" and result.weights.is_file()
    assert (out / "nested_attention_sdxl_tiny-step0000012.safetensors").is_file()
    assert sorted(p.name for p in (out / "states").iterdir()) == ["state-0000012.pt", "state-0000024.pt"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step0000012.png", "step0000024.png"]
    log = read_log(out / "train_log.jsonl")
    data_event = next(r for r in log if r.get("event") == "data")
    assert data_event["skipped_unreadable"] == 1 and data_event["images"] == 5 and data_event["words"] == ["dog", "woman"]
    steps = [r for r in log if "step" in r and "event" not in r]
    assert [r["step"] for r in steps] == [1, 4, 8, 12, 16, 20, 24]
    assert all(set(r) >= {"loss", "lr", "grad_norm", "samples_per_s"} and r["loss"] > 0 for r in steps)

    folder_paths.add_model_folder_path("nested_attention", str(out))
    from nested_attention.nodes import extension as nodes
    weights = nodes.NestedAttentionLoader.execute(result.weights.name).args[0]
    assert weights.source_format == "nested_attention" and weights.base_family == "sdxl_tiny"
    model, clip = sdxl_models.patcher, sdxl_models.clip
    reference = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(3))
    subject = nodes.NestedAttentionSubject.execute(weights, sdxl_models.clip_vision, reference, "dog").args[0]
    patched = nodes.ApplyNestedAttention.execute(model, subject, 1.0, 0.0, 1.0).args[0]
    positive = nodes.NestedAttentionTextEncode.execute(clip, "a photo of a dog on the grass").args[0]
    negative = host_nodes.CLIPTextEncode().encode(clip, "")[0]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}

    def sample(m):
        return host_nodes.common_ksampler(m, 5, 3, 4.0, "euler", "normal", positive, negative, latent)[0]["samples"]

    assert (sample(patched) - sample(model)).abs().max() > 1e-3


def fixed_eval_batch(session, timesteps=(150, 400, 650, 900)):
    """Every training image with itself as reference, at fixed timesteps and fixed noise."""
    from nested_attention.training.batch import RowPlan, assemble
    from nested_attention.training.data import ReferenceChoice

    den = session.denoiser
    plans = [RowPlan(i, 0, i, ReferenceChoice(i, None), "none") for i in range(len(session.data)) for _ in timesteps]
    sigma = den.model_sampling.sigma(torch.tensor(list(timesteps) * len(session.data))).float()
    probe = assemble(session.store, session.data, plans[:1], den.model_sampling, den.process_latent_in, 0)
    noise = torch.randn((len(plans), *probe.x0.shape[1:]), generator=torch.Generator().manual_seed(123))
    return assemble(session.store, session.data, plans, den.model_sampling, den.process_latent_in, 0,
                    fixed_draws=(sigma, noise))


def test_it_learns_to_lower_the_denoising_loss(training, sdxl_models, helpers, tiny_models, tmp_path):
    """Reference = target: the trained adapter beats both its initialisation and no adapter."""
    from nested_attention.training.loop import train
    from nested_attention.training.session import open_session
    from nested_attention.training.step import encode_nested

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    config = helpers.tiny_config(tiny_models, data, tmp_path / "out", reference="self", drop_text=0.0,
                                 drop_subject=0.0, drop_both=0.0, max_steps=40, lr=2e-3, warmup_steps=2)
    session = open_session(config, models=sdxl_models)
    batch = fixed_eval_batch(session)

    def loss(with_adapter: bool) -> float:
        with torch.no_grad():
            nested = encode_nested(session.encoder, batch.references) if with_adapter else None
            return float(session.denoiser.losses(batch, nested).mean())

    no_adapter, initial = loss(False), loss(True)
    train(session)
    trained = loss(True)
    print(f"denoising loss on the training images: no adapter {no_adapter:.5f}, initial {initial:.5f}, "
          f"trained {trained:.5f}")
    assert trained < initial - 0.01 * initial
    assert trained < no_adapter - 0.01 * no_adapter


def test_warm_cache_makes_no_host_calls_and_gives_the_same_loss(training, sdxl_models, helpers, tiny_models, tmp_path):
    from nested_attention.training.loop import micro_batch_loss, plans_for
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 1, "c": 1})  # c, b: single images, augmented crops
    config = helpers.tiny_config(tiny_models, data, tmp_path / "out", cache_dir=str(tmp_path / "cache"),
                                 drop_text=0.3, drop_subject=0.1, drop_both=0.3)

    def epoch_losses():
        session = open_session(config, models=sdxl_models)
        with torch.no_grad():
            losses = [float(micro_batch_loss(session, plans_for(session, k)[1]))
                      for k in range(session.order.micro_per_epoch)]
        return losses, dict(session.encoders.calls), session.store.cache.stats

    cold, cold_calls, _ = epoch_losses()
    warm, warm_calls, stats = epoch_losses()
    assert cold_calls["vae"] == 4 and cold_calls["clip_vision"] >= 3 and cold_calls["text"] >= 2
    assert sum(warm_calls.values()) == 0, warm_calls
    assert warm == cold
    assert stats["latent_hits"] == 4 and not any(k.endswith("misses") for k, v in stats.items() if v)

    no_cache = helpers.tiny_config(tiny_models, data, tmp_path / "out2", cache=False, drop_text=0.3, drop_subject=0.1,
                                   drop_both=0.3)
    session = open_session(no_cache, models=sdxl_models)
    with torch.no_grad():
        assert [float(micro_batch_loss(session, plans_for(session, k)[1])) for k in range(2)] == cold
    assert not (tmp_path / "out2" / "feature_cache").exists()


def test_resume_after_sigkill_matches_an_uninterrupted_run(training, helpers, tiny_models, tmp_path, comfy_root):
    """All three runs are fresh processes of train.py (a long-lived test process may round the last bit of
    some sums differently, which Adam then magnifies past 1e-6)."""
    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    cache = tmp_path / "cache"
    steps = 8
    full = helpers.run_train(*helpers.cli_args(tiny_models, comfy_root, data, tmp_path / "full", max_steps=steps,
                                               cache_dir=str(cache), warmup_steps=3))
    assert full.returncode == 0, full.stderr[-3000:]

    args = helpers.cli_args(tiny_models, comfy_root, data, tmp_path / "killed", max_steps=steps, save_every=1,
                            cache_dir=str(cache), warmup_steps=3)
    process = subprocess.Popen(helpers.train_command(*args), cwd=helpers.REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    half = tmp_path / "killed" / "states" / f"state-{steps // 2:07d}.pt"
    deadline = time.monotonic() + 240
    while not half.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    stderr = process.communicate()[1]
    assert half.exists(), stderr[-3000:]
    assert not (tmp_path / "killed" / "nested_attention_sdxl_tiny.safetensors").exists()  # really cut short

    resumed = helpers.run_train(*args, "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed" in resumed.stderr
    resumed_log = [(r["step"], r["loss"]) for r in read_log(tmp_path / "killed" / "train_log.jsonl") if "loss" in r]
    full_log = [(r["step"], r["loss"]) for r in read_log(tmp_path / "full" / "train_log.jsonl") if "loss" in r]
    assert sorted(set(resumed_log)) == full_log  # every step's loss, bit for bit (a step logged twice is fine)
    ours = helpers.load_weights_tensors(tmp_path / "killed" / "nested_attention_sdxl_tiny.safetensors")
    theirs = helpers.load_weights_tensors(tmp_path / "full" / "nested_attention_sdxl_tiny.safetensors")
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6, msg=key)


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(training, sdxl_models, helpers, tiny_models,
                                                                         tmp_path, comfy_root):
    """torchrun, 2 processes x batch 1 vs 1 process x batch 2: the same rows, noise and losses (atol 1e-6); the
    weights equal up to float summation order (atol 1e-5 at lr 1e-4; Adam magnifies the last bits of tiny
    gradients, about 1e-5 at lr 1e-3)."""
    from nested_attention.training.loop import train
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2, "c": 1})  # 5 images: 1 left out per epoch
    cache = tmp_path / "cache"
    common = dict(max_steps=4, cache_dir=str(cache), grad_accum=2, warmup_steps=1, lr=1e-4)
    one = train(open_session(helpers.tiny_config(tiny_models, data, tmp_path / "one", batch_size=2, **common),
                             models=sdxl_models))
    two = helpers.run_train(*helpers.cli_args(tiny_models, comfy_root, data, tmp_path / "two", batch_size=1, **common),
                            processes=2)
    assert two.returncode == 0, two.stderr[-3000:]
    log = read_log(tmp_path / "two" / "train_log.jsonl")
    assert next(r for r in log if r.get("event") == "start")["processes"] == 2
    ours = helpers.load_weights_tensors(tmp_path / "two" / "nested_attention_sdxl_tiny.safetensors")
    theirs = helpers.load_weights_tensors(one.weights)
    print(f"max |2 processes - 1 process| over the weights: {max((ours[k] - theirs[k]).abs().max() for k in ours):.2e}")
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-5, msg=key)
    one_log = [r for r in read_log(tmp_path / "one" / "train_log.jsonl") if "loss" in r]
    two_log = [r for r in log if "loss" in r]
    assert [r["loss"] for r in one_log] == pytest.approx([r["loss"] for r in two_log], abs=1e-6)
    assert [r["grad_norm"] for r in one_log] == pytest.approx([r["grad_norm"] for r in two_log], rel=1e-4)


def sigterm_during_step_3(monkeypatch):
    """The process gets SIGTERM while the loop plans step 3 (its third micro-batch)."""
    from nested_attention.training import loop

    original = loop.plans_for

    def plans_then_sigterm(session, micro_index):
        if micro_index == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during step 3
        return original(session, micro_index)

    monkeypatch.setattr(loop, "plans_for", plans_then_sigterm)


def test_sigterm_saves_the_state_and_stops_cleanly(training, sdxl_models, helpers, tiny_models, tmp_path, monkeypatch):
    from nested_attention.training import loop
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    sigterm_during_step_3(monkeypatch)
    out = tmp_path / "out"
    result = loop.train(open_session(helpers.tiny_config(tiny_models, data, out, max_steps=10), models=sdxl_models))
    assert result.status == "stopped" and result.step == 3
    assert (out / "states" / "state-0000003.pt").is_file() and result.weights.is_file()
    assert read_log(out / "train_log.jsonl")[-1]["event"] == "stop"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_state(training, sdxl_models, helpers,
                                                                            tiny_models, tmp_path, monkeypatch):
    """A NaN loss at step 3 comes from the parameters after step 2: their state is set aside, step 1's named."""
    from nested_attention.training import loop
    from nested_attention.training.errors import TrainingDivergedError
    from nested_attention.training.session import open_session
    from nested_attention.training.state import latest_state, load_state

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    original = loop.micro_batch_loss
    calls = []

    def nan_at_third_step(session, plans):
        if torch.is_grad_enabled():  # a training micro-batch (the check before a save runs without gradients)
            calls.append(1)
        loss = original(session, plans)
        return loss * float("nan") if len(calls) == 3 and torch.is_grad_enabled() else loss

    monkeypatch.setattr(loop, "micro_batch_loss", nan_at_third_step)
    out = tmp_path / "out"
    session = open_session(helpers.tiny_config(tiny_models, data, out, max_steps=10, save_every=1), models=sdxl_models)
    with pytest.raises(TrainingDivergedError, match=r"the loss became NaN or infinite at step 3; state-0000002\.pt "
                                                    r"and .*-step0000002\.safetensors, written after step 2, led to it "
                                                    r"and were renamed \*\.diverged; the newest good state is "
                                                    r".*state-0000001\.pt: continue from it with --resume .*lower --lr"):
        loop.train(session)
    assert latest_state(out / "states") == out / "states" / "state-0000001.pt"
    assert (out / "states" / "state-0000002.pt.diverged").is_file()
    state = load_state(out / "states" / "state-0000001.pt")
    assert state["step"] == 1 and all(torch.isfinite(t).all() for t in state["encoder"].values())
    assert read_log(out / "train_log.jsonl")[-1]["event"] == "diverged"


def test_init_of_another_family_is_refused(training, sdxl_models, helpers, tiny_models, tmp_path):
    from nested_attention.nested_attention_core.encoder import EncoderConfig, SubjectEncoder
    from nested_attention.nested_attention_core.families import SD15
    from nested_attention.nested_attention_core.weights import save_weights
    from nested_attention.training.errors import TrainingConfigError
    from nested_attention.training.session import open_session

    init = tmp_path / "sd15.safetensors"
    config = EncoderConfig(num_tokens=2, width=32, depth=1, heads=2, dim_head=16, image_feature_dim=32, output_dim=768)
    save_weights(init, SubjectEncoder(config, list(SD15.layers)), "sd15")
    data = helpers.make_data(tmp_path / "data", {"a": 2})
    with pytest.raises(TrainingConfigError, match=r"--init .*sd15.safetensors was made for SD1\.5 .*give --init weights "
                                                  r"of its base family .*or leave --init out"):
        open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out", init=str(init)), models=sdxl_models)


def test_init_from_our_own_weights_warm_starts_the_encoder(training, sdxl_models, helpers, tiny_models, tmp_path):
    from nested_attention.nested_attention_core.weights import load_weights, save_weights
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    first = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "a", seed=7), models=sdxl_models)
    init = tmp_path / "init.safetensors"
    save_weights(init, first.encoder, "sdxl_tiny")
    second = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "b", init=str(init)), models=sdxl_models)
    assert second.encoder_source == str(init) and second.encoder.training
    expected = load_weights(init).encoder.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in second.encoder.state_dict().items())
    assert all(p.requires_grad for p in second.encoder.parameters())


def test_ip_adapter_plus_init_of_another_family_is_refused(training, sdxl_models, helpers, tiny_models, tmp_path):
    """An IP-Adapter Plus file (here a small SD1.5-layout one) goes through the IP-Adapter import of --init."""
    from safetensors.torch import save_file

    from nested_attention.nested_attention_core.encoder import EncoderConfig, Resampler
    from nested_attention.nested_attention_core.families import SD15
    from nested_attention.nested_attention_core.layers import ip_adapter_order
    from nested_attention.training.errors import TrainingConfigError
    from nested_attention.training.session import open_session

    config = EncoderConfig(num_tokens=2, width=64, depth=1, heads=1, dim_head=64, image_feature_dim=32, output_dim=16)
    tensors = {f"image_proj.{k}": v.contiguous() for k, v in Resampler(config).state_dict().items()}
    for k, layer in enumerate(ip_adapter_order(list(SD15.layers))):
        for name in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{2 * k + 1}.{name}.weight"] = torch.zeros(layer.width, config.output_dim)
    init = tmp_path / "ip-adapter-plus_sd15.safetensors"
    save_file(tensors, str(init))
    data = helpers.make_data(tmp_path / "data", {"a": 2})
    with pytest.raises(TrainingConfigError, match=r"--init .*ip-adapter-plus_sd15.safetensors was made for SD1\.5 "
                                                  r"\(16 cross-attention layers.*or leave --init out"):
        open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out", init=str(init)), models=sdxl_models)


def _resumable_states(states_dir) -> dict:
    from nested_attention.training.state import list_states, load_state

    return {step: load_state(path)["encoder"] for step, path in list_states(states_dir)}


@pytest.mark.parametrize("lr", [1e3, 1e30, float("inf")])
def test_a_huge_lr_keeps_no_state_made_by_the_blow_up(training, sdxl_models, helpers, tiny_models, tmp_path, lr):
    """Too large a step blows the parameters up (to 1e30, or NaN through NaN gradients) before the loss shows it.
    No resumable state may be one that produced a NaN loss or gradient, or hold non-finite parameters; the
    error names the newest good one (or says there is none). lr inf (refused by the config since) is set on the
    optimizer directly."""
    from nested_attention.training import loop
    from nested_attention.training.errors import TrainingDivergedError
    from nested_attention.training.session import open_session
    from nested_attention.training.state import latest_state

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    out = tmp_path / "out"
    session = open_session(helpers.tiny_config(tiny_models, data, out, max_steps=8, save_every=1, cache=False,
                                               lr=min(lr, 1.0)), models=sdxl_models)
    session.scheduler.base_lrs = [lr]
    session.optimizer.param_groups[0]["lr"] = lr
    with pytest.raises(TrainingDivergedError) as caught:
        loop.train(session)
    message = str(caught.value)
    states = _resumable_states(out / "states")
    for step, encoder in states.items():
        assert all(torch.isfinite(t).all() and t.abs().max() < 1e6 for t in encoder.values()), step
    kept = latest_state(out / "states")
    if kept is None:
        assert "no good training state was kept" in message, message
    else:
        assert f"the newest good state is {kept}" in message and f"--resume {kept}" in message, message
    diverged_at = int(re.search(r"at step (\d+)", message).group(1))
    assert all(step < diverged_at - 1 for step in states) or "parameters became" in message
    print(lr, message)


def test_changed_optimizer_flags_on_resume_are_applied_as_announced(training, sdxl_models, helpers, tiny_models,
                                                                     tmp_path, caplog):
    """The warning says 'the run continues with the new values'; the loaded optimizer and scheduler states used
    to keep the old --lr and --weight-decay (and the old schedule for the first resumed step)."""
    import logging

    from nested_attention.training import loop
    from nested_attention.training.optim import warmup_cosine
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    out = tmp_path / "out"
    loop.train(open_session(helpers.tiny_config(tiny_models, data, out, max_steps=2, lr=1e-3, weight_decay=0.01,
                                                warmup_steps=0), models=sdxl_models))
    session = open_session(helpers.tiny_config(tiny_models, data, out, max_steps=4, lr=2e-4, weight_decay=0.1,
                                               warmup_steps=3, resume="latest"), models=sdxl_models)
    caplog.set_level(logging.WARNING, logger="nested_attention.training")
    assert loop.resume(session, []) == 2
    factor = warmup_cosine(3, 4)
    group = session.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(2e-4 * factor(2), rel=1e-12) and group["weight_decay"] == 0.1
    assert session.scheduler.base_lrs == [2e-4] and group["initial_lr"] == 2e-4
    assert "--lr" in caplog.text and "the run continues with the new values" in caplog.text
    used = []
    original_step = session.optimizer.step

    def recording_step(*args, **kwargs):
        used.append(session.optimizer.param_groups[0]["lr"])
        return original_step(*args, **kwargs)

    session.optimizer.step = recording_step
    loop.run(session)
    assert used == pytest.approx([2e-4 * factor(2), 2e-4 * factor(3)], rel=1e-12)


def test_a_changed_init_on_resume_is_said_to_be_unused(training, caplog):
    """--init only builds a new encoder; a resumed run takes the encoder from the state, whatever --init says."""
    import logging

    from nested_attention.training.state import check_compatible

    caplog.set_level(logging.WARNING, logger="nested_attention.training")
    check_compatible("s.pt", {"identity": {}, "config": json.dumps({"init": None, "lr": 1.0})},
                     json.dumps({"init": "ip-adapter.bin", "lr": 1.0}), {})
    assert "--init is not used when resuming" in caplog.text and "continues with the new values" not in caplog.text


def test_two_nodes_of_one_process_train_like_one_node_of_two(training, helpers, tiny_models, tmp_path, comfy_root):
    """torchrun --nnodes 2 (one rendezvous, c10d, one process per node; both "nodes" on this machine, gloo) against
    torchrun --standalone --nproc_per_node 2: the same weights to fp32 rounding, the same logged losses."""
    import socket
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    common = dict(max_steps=2, cache_dir=str(tmp_path / "cache"), warmup_steps=1, batch_size=1, lr=1e-4)
    one_node = helpers.run_train(*helpers.cli_args(tiny_models, comfy_root, data, tmp_path / "one", **common),
                                 processes=2)
    assert one_node.returncode == 0, one_node.stderr[-3000:]

    torchrun = str(Path(sys.executable).with_name("torchrun"))
    node = [torchrun, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
            f"127.0.0.1:{port}", "--rdzv-id", "nested-attention-test", "-m", "nested_attention.training",
            *helpers.cli_args(tiny_models, comfy_root, data, tmp_path / "two", **common)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}  # as torchrun sets it for 2 per node
    nodes = [subprocess.Popen(node, cwd=helpers.REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errors = [p.communicate(timeout=600)[1] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], "\n".join(e[-2000:] for e in errors)
    log = read_log(tmp_path / "two" / "train_log.jsonl")
    assert next(r for r in log if r.get("event") == "start")["processes"] == 2
    ours = helpers.load_weights_tensors(tmp_path / "two" / "nested_attention_sdxl_tiny.safetensors")
    theirs = helpers.load_weights_tensors(tmp_path / "one" / "nested_attention_sdxl_tiny.safetensors")
    assert ours.keys() == theirs.keys()
    print(f"max |2 nodes - 1 node| over the weights: {max((ours[k] - theirs[k]).abs().max() for k in ours):.2e}")
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6, msg=key)
    one_log = [r["loss"] for r in read_log(tmp_path / "one" / "train_log.jsonl") if "loss" in r]
    assert [r["loss"] for r in log if "loss" in r] == pytest.approx(one_log, abs=1e-6)


def test_a_run_stopped_by_sigterm_exits_143_and_a_finished_one_0(training, helpers, tiny_models, tmp_path,
                                                                 comfy_root, monkeypatch):
    """SIGTERM saves and stops, and the command ended with 0 as if it had finished. Measures the command's exit
    code (cli.main, in this process): 128 + 15 for a run SIGTERM stopped at step 3 of 10, 0 for a finished run."""
    from nested_attention.training import cli, loop

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    original = loop.plans_for
    sigterm_during_step_3(monkeypatch)
    args = helpers.cli_args(tiny_models, comfy_root, data, tmp_path / "stopped", max_steps=10, cache=False)
    assert cli.main([*args, "--cpu"]) == 143
    assert read_log(tmp_path / "stopped" / "train_log.jsonl")[-1]["event"] == "stop"
    monkeypatch.setattr(loop, "plans_for", original)
    args = helpers.cli_args(tiny_models, comfy_root, data, tmp_path / "finished", max_steps=2, cache=False)
    assert cli.main([*args, "--cpu"]) == 0


def test_a_state_of_two_processes_is_not_resumed_by_one(training, sdxl_models, helpers, tiny_models, tmp_path):
    """A state written by 2 processes (batch 2 each: global batch 4) resumed in 1 process silently trained on a
    global batch of 2, while a changed --batch-size is refused. Measures: resuming such a state (the state of a
    one-process run with the world size a 2-process run records) raises ResumeError naming both process counts
    and the combination that resumes exactly; the same state with its own world size resumes."""
    from nested_attention.training import loop
    from nested_attention.training.errors import ResumeError
    from nested_attention.training.session import open_session
    from nested_attention.training.state import latest_state, load_state, save_state

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    out = tmp_path / "out"
    loop.train(open_session(helpers.tiny_config(tiny_models, data, out, max_steps=1, cache=False), models=sdxl_models))
    path = latest_state(out / "states")
    session = open_session(helpers.tiny_config(tiny_models, data, out, max_steps=2, cache=False, resume="latest"),
                           models=sdxl_models)
    assert loop.resume(session, []) == 1
    state = load_state(path)
    state.pop("version")
    save_state(path, {**state, "world_size": 2})
    with pytest.raises(ResumeError, match=r"written by 2 processes \(global batch 4 = --batch-size 2 x --grad-accum 1 "
                                          r"x 2 processes\); this run has 1 process, .*resumes exactly with torchrun "
                                          r"with 2 processes in all and the same --batch-size 2 --grad-accum 1"):
        loop.resume(session, [])
