"""The training method: nested attention by default, and a state resumes only with its own method."""
from __future__ import annotations

import pytest


def test_nested_attention_is_the_default_and_trains_every_parameter(training, sdxl_models, helpers, tiny_models,
                                                                     tmp_path):
    from nested_attention.training.method import NESTED_TRAINING
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"alice": 2})
    session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out", cache=False), models=sdxl_models)
    assert session.method is NESTED_TRAINING and session.identity["method"] == "nested"
    params = list(session.encoder.parameters())
    assert len(session.parameters) == len(params) and all(a is b for a, b in zip(session.parameters, params))
    assert session.optimizer.param_groups[0]["params"] == session.parameters
    from nested_attention.nodes import host

    assert [b.rule for b in host.applied_subjects(session.denoiser.patched).bindings] == ["nested"]


def test_a_state_resumes_only_with_the_method_that_made_it(training):
    from nested_attention.training.errors import ResumeError
    from nested_attention.training.state import check_compatible

    identity = {"checkpoint": "c", "method": "single_token"}
    state = {"identity": dict(identity), "config": "{}"}
    check_compatible("s.pt", state, "{}", identity)
    with pytest.raises(ResumeError, match=r"another method \('single_token', now 'nested'\)"):
        check_compatible("s.pt", state, "{}", {**identity, "method": "nested"})
    older = {"identity": {"checkpoint": "c"}, "config": "{}"}  # written before the method was recorded
    check_compatible("s.pt", older, "{}", {**identity, "method": "nested"})
    with pytest.raises(ResumeError, match="another method"):
        check_compatible("s.pt", older, "{}", identity)


def test_every_registered_method_has_its_training_and_weights_record_it(training, sdxl_models, helpers, tiny_models,
                                                                         tmp_path):
    from nested_attention.nested_attention_core import methods
    from nested_attention.nested_attention_core.weights import load_weights
    from nested_attention.training.method import METHODS
    from nested_attention.training.session import open_session

    assert {name: m.method for name, m in METHODS.items()} == methods.METHODS
    data = helpers.make_data(tmp_path / "data", {"alice": 2})
    session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out", cache=False), models=sdxl_models,
                           method=METHODS["decoupled"])
    session.save_weights(tmp_path / "decoupled.safetensors")
    assert load_weights(tmp_path / "decoupled.safetensors").method == "decoupled"
