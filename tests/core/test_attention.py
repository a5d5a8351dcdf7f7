"""Nested attention against an independent float64 reference written with explicit loops."""
import math

import pytest
import torch

from nested_attention.nested_attention_core import SubjectAttention, add_nested_values, nested_attention, plain_attention
from nested_attention.nested_attention_core.attention import EXPLICIT_NESTED_TOKENS


def reference(q, k, v, heads, subjects):
    """out_q = sum_j P_qj val_qj, val_qj = (1 - m_q) v_j + m_q * lambda * v*_q for j a subject token."""
    q, k, v = q.double(), k.double(), v.double()
    b, nq, width = q.shape
    d = width // heads
    out = torch.zeros(b, nq, width, dtype=torch.float64)
    for row in range(b):
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            for i in range(nq):
                qi = q[row, i, sl]
                p = torch.softmax(torch.stack([qi @ k[row, j, sl] for j in range(k.shape[1])]) / math.sqrt(d), 0)
                values = [v[row, j, sl].clone() for j in range(k.shape[1])]
                for s in subjects:
                    nk = s.nested_keys[row if s.nested_keys.shape[0] > 1 else 0, :, sl].double()
                    nv = s.nested_values[row if s.nested_values.shape[0] > 1 else 0, :, sl].double()
                    v_star = torch.softmax(nk @ qi / math.sqrt(d), 0) @ nv
                    m = 1.0 if s.query_mask is None else float(s.query_mask[row if s.query_mask.shape[0] > 1 else 0, i])
                    for j in range(k.shape[1]):
                        if s.token_mask[row, j]:
                            values[j] = (1 - m) * v[row, j, sl] + m * s.strength * v_star
                out[row, i, sl] = sum(p[j] * values[j] for j in range(k.shape[1]))
    return out


def make_inputs(seed, b=3, nq=7, nk=9, heads=2, d=4):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, n, heads * d, generator=g) for n in (nq, nk, nk))
    return q, k, v, g


def subject(g, b, nk, width, positions_per_row, m=5, strength=1.0, per_row_kv=False, query_mask=None):
    mask = torch.zeros(b, nk, dtype=torch.bool)
    for row, positions in positions_per_row.items():
        mask[row, positions] = True
    kv_rows = b if per_row_kv else 1
    return SubjectAttention(torch.randn(kv_rows, m, width, generator=g), torch.randn(kv_rows, m, width, generator=g),
                            mask, strength, query_mask)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_subject_matches_reference(seed):
    q, k, v, g = make_inputs(seed)
    s = subject(g, 3, 9, 8, {0: [4], 2: [2, 3]}, strength=1.0)  # row 1 lacks the word; row 2 has 2 BPE tokens
    out = nested_attention(q, k, v, 2, [s])
    torch.testing.assert_close(out.double(), reference(q, k, v, 2, [s]), atol=1e-5, rtol=1e-5)


# nested_rows forms the weights of up to EXPLICIT_NESTED_TOKENS nested tokens itself, a fused kernel more: both
DOG_TOKENS = [pytest.param(6, id="few_tokens"), pytest.param(EXPLICIT_NESTED_TOKENS + 6, id="many_tokens")]


@pytest.mark.parametrize("dog_tokens", DOG_TOKENS)
def test_two_subjects_strength_and_query_masks_match_reference(dog_tokens):
    q, k, v, g = make_inputs(3, b=4, nq=6, nk=10, heads=3, d=4)
    qmask = torch.rand(4, 6, generator=g)
    person = subject(g, 4, 10, 12, {0: [2], 1: [2], 3: [5]}, m=3, strength=0.6, per_row_kv=True, query_mask=qmask)
    dog = subject(g, 4, 10, 12, {0: [7, 8], 3: [1]}, m=dog_tokens, strength=1.4,
                  query_mask=(qmask > 0.5).float()[:1])
    out = nested_attention(q, k, v, 3, [person, dog])
    torch.testing.assert_close(out.double(), reference(q, k, v, 3, [person, dog]), atol=1e-5, rtol=1e-5)


def test_absent_subject_is_bit_equal_to_plain_attention():
    q, k, v, g = make_inputs(4)
    s = subject(g, 3, 9, 8, {})
    assert torch.equal(nested_attention(q, k, v, 2, [s]), plain_attention(q, k, v, 2))


def test_rows_without_the_word_are_untouched_bit_for_bit():
    q, k, v, g = make_inputs(5)
    s = subject(g, 3, 9, 8, {1: [3]})
    out, plain = nested_attention(q, k, v, 2, [s]), plain_attention(q, k, v, 2)
    assert torch.equal(out[0], plain[0]) and torch.equal(out[2], plain[2])
    assert not torch.allclose(out[1], plain[1])


def test_nested_values_equal_to_the_original_value_give_plain_attention():
    q, k, v, g = make_inputs(6)
    positions = {0: [2], 1: [5], 2: [0]}
    mask = torch.zeros(3, 9, dtype=torch.bool)
    for row, p in positions.items():
        mask[row, p] = True
    nested_v = torch.stack([v[row, p[0]].expand(5, -1) for row, p in positions.items()])  # v*_q == v_s for every q
    s = SubjectAttention(torch.randn(3, 5, 8, generator=g), nested_v, mask)
    torch.testing.assert_close(nested_attention(q, k, v, 2, [s]), plain_attention(q, k, v, 2), atol=1e-6, rtol=0)


def test_strength_zero_removes_the_subject_column():
    q, k, v, g = make_inputs(7)
    s = subject(g, 3, 9, 8, {0: [4]}, strength=0.0)
    v_without = v.clone()
    v_without[0, 4] = 0
    torch.testing.assert_close(nested_attention(q, k, v, 2, [s])[0], plain_attention(q, k, v_without, 2)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float64_reference(dtype):
    q, k, v, g = make_inputs(8, nq=16, nk=12, heads=2, d=16)
    s = subject(g, 3, 12, 32, {0: [1], 2: [6]}, m=8)
    half = SubjectAttention(s.nested_keys.to(dtype), s.nested_values.to(dtype), s.token_mask)
    out = nested_attention(q.to(dtype), k.to(dtype), v.to(dtype), 2, [half])
    assert out.dtype == dtype
    ref = reference(q.to(dtype), k.to(dtype), v.to(dtype), 2, [half])
    torch.testing.assert_close(out.double(), ref, atol=2e-2, rtol=2e-2)


def test_correction_adds_to_any_base_output():
    """The correction is additive on top of whatever plain output the layer owner computed."""
    q, k, v, g = make_inputs(9)
    s = subject(g, 3, 9, 8, {2: [1]})
    base = plain_attention(q, k, v, 2) + 0.25
    torch.testing.assert_close(add_nested_values(base, q, k, v, 2, [s]), nested_attention(q, k, v, 2, [s]) + 0.25)


def test_gradients_reach_nested_keys_values_and_queries():
    q, k, v, g = make_inputs(10)
    s = subject(g, 3, 9, 8, {0: [4]})
    nk, nv = s.nested_keys.requires_grad_(), s.nested_values.requires_grad_()
    q.requires_grad_()
    nested_attention(q, k, v, 2, [SubjectAttention(nk, nv, s.token_mask)]).square().sum().backward()
    assert nk.grad.abs().sum() > 0 and nv.grad.abs().sum() > 0 and q.grad.abs().sum() > 0


def test_gradients_flow_from_the_attention_output_to_encoder_and_projections():
    """Training path: image features -> encoder -> nested K/V -> nested attention -> loss."""
    from nested_attention.nested_attention_core.encoder import EncoderConfig, SubjectEncoder
    from nested_attention.nested_attention_core.layers import LayerSpec

    torch.manual_seed(0)
    layers = [LayerSpec("input", 1, 0, 8), LayerSpec("output", 2, 0, 8)]
    config = EncoderConfig(num_tokens=3, width=16, depth=1, heads=2, dim_head=8, image_feature_dim=12, output_dim=10)
    encoder = SubjectEncoder(config, layers)
    tokens = encoder.encode(torch.randn(1, 5, 12))[0]
    q, k, v, g = make_inputs(11)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[0, 4] = True
    loss = 0
    for layer_id, (nested_k, nested_v) in encoder.nested_keys_values(tokens).items():
        loss = loss + nested_attention(q, k, v, 2, [SubjectAttention(nested_k[None], nested_v[None], mask)]).square().sum()
    loss.backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("dog_tokens", DOG_TOKENS)
@pytest.mark.parametrize("rule", ["owned", "over_a_base"])
def test_gradients_match_the_float64_reference(rule, dog_tokens):
    """Training's backward, on both paths: the layer's own fused attention (nested_attention) and the
    correction over another owner's output (add_nested_values): every input's gradient."""
    q, k, v, g = make_inputs(12, b=3, nq=6, nk=10, heads=2, d=4)
    qmask = torch.rand(3, 6, generator=g)
    person = subject(g, 3, 10, 8, {0: [2], 2: [4, 5]}, m=3, strength=0.7, per_row_kv=True)
    dog = subject(g, 3, 10, 8, {2: [7]}, m=dog_tokens, strength=1.3, query_mask=qmask)
    leaves = [q, k, v, person.nested_keys, person.nested_values, dog.nested_keys, dog.nested_values]
    for t in leaves:
        t.requires_grad_()
    weight = torch.randn(3, 6, 8, generator=g)
    run = {"owned": lambda: nested_attention(q, k, v, 2, [person, dog]),
           "over_a_base": lambda: add_nested_values(plain_attention(q, k, v, 2), q, k, v, 2, [person, dog])}[rule]
    ours = torch.autograd.grad((run() * weight).sum(), leaves)
    expected = torch.autograd.grad((reference(q, k, v, 2, [person, dog]) * weight.double()).sum(), leaves)
    for name, a, b in zip(["q", "k", "v", "person keys", "person values", "dog keys", "dog values"], ours, expected):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-5, rtol=1e-5, msg=name)


def test_rows_without_a_subject_come_from_the_owners_attention_alone():
    """The owner's plain attention (the host's) computes the rows without a subject, and only those."""
    q, k, v, g = make_inputs(13, b=4)
    s = subject(g, 4, 9, 8, {1: [3], 2: [5]})
    called = []

    def owners(q, k, v, heads):
        called.append(q.shape[0])
        return plain_attention(q, k, v, heads) * 2  # recognisable

    out = nested_attention(q, k, v, 2, [s], plain=owners)
    assert called == [2]
    assert torch.equal(out[[0, 3]], plain_attention(q[[0, 3]], k[[0, 3]], v[[0, 3]], 2) * 2)
    torch.testing.assert_close(out[1:3].double(), reference(q, k, v, 2, [s])[1:3], atol=1e-5, rtol=1e-5)


def test_rows_a_region_leaves_out_are_the_owners_attention_bit_for_bit():
    q, k, v, g = make_inputs(15)
    region = torch.ones(3, 7)
    region[2] = 0  # row 2 holds the word, but its region is empty
    s = subject(g, 3, 9, 8, {1: [3], 2: [5]}, query_mask=region)
    out, plain = nested_attention(q, k, v, 2, [s]), plain_attention(q, k, v, 2)
    assert torch.equal(out[2], plain_attention(q[2:], k[2:], v[2:], 2)[0]) and torch.equal(out[0], plain[0])
    torch.testing.assert_close(out.double(), reference(q, k, v, 2, [s]), atol=1e-5, rtol=1e-5)
