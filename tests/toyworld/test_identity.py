"""Identities: deterministic from their id, unique within a domain, train/held-out split."""
from __future__ import annotations

import pytest

from nested_attention.toyworld.errors import IdentityError
from nested_attention.toyworld.identity import (ATTRIBUTES, DOMAINS, HELDOUT_START, IDENTITY_COUNT, PERSON, PET, PersonIdentity,
                               PetIdentity, attribute_labels, combination_count, heldout_ids, is_heldout,
                               sample_identity, train_ids)
from nested_attention.toyworld.rng import Rng, key_seed, permute


def discrete(identity) -> tuple:
    return tuple(getattr(identity, name) for name, _ in ATTRIBUTES[identity.domain])


def test_the_same_id_gives_the_same_identity():
    for domain in DOMAINS:
        for identity_id in (0, 1, 977, IDENTITY_COUNT - 1):
            assert sample_identity(domain, identity_id) == sample_identity(domain, identity_id)


def test_domains_give_their_own_types():
    assert isinstance(sample_identity(PERSON, 3), PersonIdentity)
    assert isinstance(sample_identity(PET, 3), PetIdentity)
    assert sample_identity(PET, 3).key == "pet_0003"


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_two_ids_of_a_domain_share_all_discrete_attributes(domain):
    combos = {discrete(sample_identity(domain, i)) for i in range(IDENTITY_COUNT)}
    assert len(combos) == IDENTITY_COUNT
    assert combination_count(domain) > 50 * IDENTITY_COUNT


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_attribute_value_occurs_among_training_ids(domain):
    seen = {name: set() for name, _ in ATTRIBUTES[domain]}
    for i in train_ids()[:600]:
        for name, index in attribute_labels(sample_identity(domain, i)).items():
            seen[name].add(index)
    for name, values in ATTRIBUTES[domain]:
        expected = len(values) if not (domain == PET and name == "pattern_colour") else 4  # + tone-on-tone shades
        assert len(seen[name]) >= expected, name


def test_the_last_tenth_is_held_out():
    assert HELDOUT_START == 1800 and IDENTITY_COUNT == 2000
    assert list(train_ids()) + list(heldout_ids()) == list(range(IDENTITY_COUNT))
    assert not is_heldout(HELDOUT_START - 1) and is_heldout(HELDOUT_START)


@pytest.mark.parametrize("domain, identity_id", [("cat", 0), (PERSON, -1), (PET, IDENTITY_COUNT), (PERSON, 1.0),
                                                 (PERSON, True)])
def test_bad_identities_are_errors_naming_the_range(domain, identity_id):
    with pytest.raises(IdentityError, match="domain|outside"):
        sample_identity(domain, identity_id)


def test_permute_is_a_bijection_and_keyed():
    for size in (1, 2, 7, 100, 1000):
        assert sorted(permute(i, size, "k") for i in range(size)) == list(range(size))
    assert [permute(i, 1000, "a") for i in range(20)] != [permute(i, 1000, "b") for i in range(20)]


def test_rng_streams_are_fixed_by_their_key():
    a, b, c = Rng("x", 1), Rng("x", 1), Rng("x", 2)
    draws_a = [a.next_u64() for _ in range(5)]
    assert draws_a == [b.next_u64() for _ in range(5)]
    assert draws_a != [c.next_u64() for _ in range(5)]
    assert key_seed("x", 1) != key_seed("x", "1")  # types are part of the key
    values = [Rng("u", i).uniform(2.0, 3.0) for i in range(200)]
    assert all(2.0 <= v < 3.0 for v in values) and max(values) - min(values) > 0.8
