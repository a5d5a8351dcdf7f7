"""Divergence that only the parameters show: a finite update that leaves them unusable is caught before
anything is written from them, the last step included."""
from __future__ import annotations

import json

import pytest
import torch


@pytest.mark.parametrize("max_steps, save_every", [(1, 0), (3, 1)])
def test_a_last_or_saved_step_that_blows_the_parameters_up_writes_nothing(training, sdxl_models, helpers,
                                                                          tiny_models, tmp_path, max_steps,
                                                                          save_every):
    """--lr 1e6 --max-steps 1 --warmup-steps 0: one finite update puts the parameters near 1e6 and the next forward
    pass is NaN. The run ended "finished" with those weights written (the Loader took them, KSampler gave NaN).
    Measures: the run raises TrainingDivergedError naming the step, and no weights file and no state exist."""
    from nested_attention.training import loop
    from nested_attention.training.errors import TrainingDivergedError
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    out = tmp_path / "out"
    session = open_session(helpers.tiny_config(tiny_models, data, out, max_steps=max_steps, save_every=save_every,
                                               lr=1e6, warmup_steps=0, cache=False), models=sdxl_models)
    with pytest.raises(TrainingDivergedError, match=r"the parameters became unusable .*at step 1; no good training "
                                                    r"state was kept"):
        loop.train(session)
    assert max(float(p.detach().abs().max()) for p in session.parameters) > 1e5  # finite, but blown up
    assert not list(out.glob("*.safetensors")) and not list((out / "states").glob("state-*"))
    events = [json.loads(line).get("event") for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert events[-1] == "diverged"


def test_the_check_before_writing_leaves_the_training_unchanged(training, sdxl_models, helpers, tiny_models,
                                                               tmp_path):
    """The check draws nothing from the random generators: a run that saves (and so checks) after every step
    has the losses and weights of a run that checks only at its end. Measures equality of both, bit for bit."""
    from nested_attention.training import loop
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 1})
    runs = {}
    for save_every in (0, 1):
        out = tmp_path / f"save{save_every}"
        session = open_session(helpers.tiny_config(tiny_models, data, out, max_steps=4, save_every=save_every,
                                                   cache=False), models=sdxl_models)
        result = loop.train(session)
        losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()
                  if '"loss"' in line]
        runs[save_every] = (losses, helpers.load_weights_tensors(result.weights))
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 4
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
