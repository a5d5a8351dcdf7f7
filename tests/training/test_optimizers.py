"""--optimizer adamw | adafactor: both train, their states save and resume exactly, Adafactor's state is small."""
from __future__ import annotations

import pytest
import torch


def state_bytes(optimizer) -> int:
    return sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
               if isinstance(v, torch.Tensor))


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor"])
def test_a_resumed_run_equals_an_uninterrupted_one_with_each_optimizer(training, sdxl_models, helpers, tiny_models,
                                                                       tmp_path, optimizer):
    from nested_attention.training.loop import train
    from nested_attention.training.session import open_session
    from nested_attention.training.state import latest_state, load_state

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    common = dict(cache_dir=str(tmp_path / "cache"), save_every=2, warmup_steps=1, max_steps=5, optimizer=optimizer,
                  lr=1e-2 if optimizer == "adafactor" else 1e-3)
    full = train(open_session(helpers.tiny_config(tiny_models, data, tmp_path / "full", **common), models=sdxl_models))
    train(open_session(helpers.tiny_config(tiny_models, data, tmp_path / "cut", **{**common, "max_steps": 2}),
                       models=sdxl_models))
    state = load_state(latest_state(tmp_path / "cut" / "states"))
    kind = {"adamw": torch.optim.AdamW, "adafactor": torch.optim.Adafactor}[optimizer]
    session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "cut", resume="latest", **common),
                           models=sdxl_models)
    assert type(session.optimizer) is kind
    keys = {k for s in state["optimizer"]["state"].values() for k in s}
    assert keys == ({"step", "exp_avg", "exp_avg_sq"} if optimizer == "adamw" else {"step", "row_var", "col_var",
                                                                                   "variance"})
    resumed = train(session)
    ours, theirs = (helpers.load_weights_tensors(r.weights) for r in (resumed, full))
    initial = state["encoder"]
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(v, initial[k]) for k, v in session.encoder.state_dict().items())  # it trained on


def test_adafactor_keeps_a_small_state_and_a_resume_with_another_optimizer_is_refused(training, sdxl_models, helpers,
                                                                                     tiny_models, tmp_path):
    from nested_attention.training.errors import ResumeError
    from nested_attention.training.loop import optimizer_step, train
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    sizes = {}
    for optimizer in ("adamw", "adafactor"):
        session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / optimizer, optimizer=optimizer,
                                                   cache=False), models=sdxl_models)
        optimizer_step(session, 0)
        sizes[optimizer] = state_bytes(session.optimizer)
        parameters = sum(p.numel() for p in session.parameters)
    assert sizes["adamw"] >= 8 * parameters  # two float32 moments
    assert sizes["adafactor"] < sizes["adamw"] / 4, sizes  # factored second moments of the matrices, no first moment

    common = dict(cache=False, max_steps=1, save_every=1)
    train(open_session(helpers.tiny_config(tiny_models, data, tmp_path / "run", **common), models=sdxl_models))
    with pytest.raises(ResumeError, match="--optimizer"):
        train(open_session(helpers.tiny_config(tiny_models, data, tmp_path / "run", optimizer="adafactor",
                                               resume="latest", **{**common, "max_steps": 2}), models=sdxl_models))
