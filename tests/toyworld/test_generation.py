"""ToyHost on the committed toy base: references whole and masked through the one preparation, the
strength of an applied subject, the VAE round trip."""
from __future__ import annotations

import numpy as np
import pytest

from nested_attention.toyworld.evaluation_inputs import reference, scene_render
from nested_attention.toyworld.publish import BASE_FILES, COMMITTED_WEIGHTS, load_methods
from nested_attention.toyworld.scene import Scene


@pytest.fixture(scope="module")
def host():
    from nested_attention.toyworld.generation import ToyHost

    return ToyHost.load(COMMITTED_WEIGHTS / BASE_FILES["checkpoint"], COMMITTED_WEIGHTS / BASE_FILES["clip_vision"])


def test_a_masked_reference_is_the_reference_with_its_background_blanked(host):
    ref = reference("pet", 1801)
    image, mask = np.asarray(ref.image)[None], np.asarray(ref.mask)[None]
    whole, masked = host.features(image), host.features(image, mask)
    share = mask[..., None] / 255.0
    blanked = np.round(image * share + 255 * (1 - share)).astype(np.uint8)  # white outside the subject
    by_hand = host.features(blanked)
    assert float((masked - by_hand).abs().max()) < 0.05 * float((masked - whole).abs().max())


def test_with_subject_applies_the_given_strength_and_rule(host):
    from nested_attention.nodes.host import applied_subjects

    methods = load_methods(COMMITTED_WEIGHTS)
    method, encoder = methods["decoupled cross-attention"]
    ref = reference("person", 1800)
    model = host.with_subject(host.model, method, encoder, np.asarray(ref.image)[None], "person", strength=0.25,
                              masks=np.asarray(ref.mask)[None])
    (binding,) = applied_subjects(model).bindings
    assert (binding.strength, binding.rule, binding.word) == (0.25, "decoupled", "person")
    assert applied_subjects(host.model) is None  # the base is left alone


def test_the_round_trip_is_close_to_the_renders_but_not_equal(host):
    renders = np.stack([scene_render("person", 1800, Scene("snow", "left", "full", "photo")),
                        scene_render("pet", 1800, Scene("red", "center", "close-up", "pencil"))])
    trips = host.round_trip(renders)
    assert trips.dtype == np.uint8 and trips.shape == renders.shape
    error = np.abs(trips.astype(int) - renders.astype(int)).mean()
    assert 0 < error < 40
