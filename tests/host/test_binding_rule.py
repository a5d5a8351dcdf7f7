"""A binding's ``rule``: the name of how the attn2 patch applies its subjects (nested attention by default)."""
import pytest
import torch

from nested_attention.nested_attention_core import RULES, PromptWords, SubjectAttention, add_nested_values

HEADS, WIDTH, N_QUERIES = 2, 8, 6  # 2 x 3 token grid
PROMPT = PromptWords((("a", (1,)), ("dog", (2, 3)), ("and", (4,)), ("a", (5,)), ("cat", (6,)), ("man", (7,))), 9)


class Binding:
    """The binding protocol with fixed nested keys/values."""

    strength = 1.0
    rule = "nested"

    def __init__(self, word, seed, **rule):
        g = torch.Generator().manual_seed(seed)
        self.word = word
        self.keys, self.values = torch.randn(1, 3, WIDTH, generator=g), torch.randn(1, 3, WIDTH, generator=g)
        self.__dict__.update(rule)

    def active(self, sigma):
        return True

    def nested_kv(self, layer_id, device, dtype):
        return self.keys, self.values

    def query_mask(self, grid, areas, latent_batch, latent_size, device):
        return None

    def subject(self):
        """What the patch should hand the rule: the word's positions in the two positive rows."""
        mask = torch.zeros(4, PROMPT.length, dtype=torch.bool)
        mask[:2] = PROMPT.token_mask(self.word)
        return SubjectAttention(self.keys, self.values, mask, 1.0, None)


@pytest.fixture(scope="module")
def call(host):
    """Run a NestedAttentionPatch of the given bindings on fixed q, k, v over a fixed host output."""
    from nested_attention.nodes.host import patch as adapter

    g = torch.Generator().manual_seed(0)
    q, base = torch.randn(4, N_QUERIES, WIDTH, generator=g), torch.randn(4, N_QUERIES, WIDTH, generator=g)
    k, v = torch.randn(4, PROMPT.length, WIDTH, generator=g), torch.randn(4, PROMPT.length, WIDTH, generator=g)

    def run(*bindings):
        extra = {"n_heads": HEADS, "uuids": ["c", "u"], "cond_or_uncond": [0, 1], "activations_shape": (4, WIDTH, 2, 3),
                 adapter.STEP_KEY: adapter.StepPrompts({"c": PROMPT}, 1.0)}
        patch = adapter.NestedAttentionPatch("input_1_0", bindings, previous=lambda *_: base)
        return patch(q, k, v, extra)

    return run, (base, q, k, v)


def same_subjects(got, expected):
    return len(got) == len(expected) and all(
        torch.equal(a.nested_keys, b.nested_keys) and torch.equal(a.token_mask, b.token_mask)
        and a.strength == b.strength for a, b in zip(got, expected))


def test_the_nested_rule_is_nested_attention_bit_for_bit(call):
    run, (base, q, k, v) = call
    dog, man = Binding("dog", 1), Binding("man", 2, rule="nested")
    expected = add_nested_values(base, q, k, v, HEADS, [dog.subject(), man.subject()])
    assert torch.equal(run(dog, man), expected)
    assert not torch.equal(expected[:2], base[:2]) and torch.equal(expected[2:], base[2:])


def test_rules_apply_to_their_own_subjects_in_binding_order(call, monkeypatch):
    run, (base, q, k, v) = call
    calls = []

    def spy(previous, q_, k_, v_, heads, subjects):
        calls.append((previous, heads, subjects))
        return previous * 2 + 1

    monkeypatch.setitem(RULES, "spy", spy)
    dog, cat, man = Binding("dog", 1), Binding("cat", 3, rule="spy"), Binding("man", 2)
    nested = add_nested_values(base, q, k, v, HEADS, [dog.subject(), man.subject()])  # the first group: dog, man
    out = run(dog, cat, man)
    assert len(calls) == 1
    previous, heads, subjects = calls[0]
    assert heads == HEADS and torch.equal(previous, nested) and same_subjects(subjects, [cat.subject()])
    assert torch.equal(out, nested * 2 + 1)

    calls.clear()
    out = run(cat, dog)  # the rule's group first, then nested attention on its output
    assert torch.equal(calls[0][0], base)
    assert torch.equal(out, add_nested_values(base * 2 + 1, q, k, v, HEADS, [dog.subject()]))


def test_a_rule_whose_word_is_not_in_the_prompt_is_not_called(call, monkeypatch):
    run, (base, *_) = call
    called = []
    monkeypatch.setitem(RULES, "spy", lambda *args: called.append(args))
    assert torch.equal(run(Binding("horse", 4, rule="spy")), base) and not called
