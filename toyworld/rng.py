"""A small deterministic random stream (splitmix64) keyed by any tuple of ints and strings.

Used instead of numpy's or Python's generators so that identities, scenes and render jitter are the
same on every platform and library version: the key is hashed with BLAKE2b (no ``hash()``, so no
dependence on PYTHONHASHSEED) and every draw is plain 64-bit integer arithmetic.
"""
from __future__ import annotations

import hashlib
import math
from typing import Sequence, TypeVar

T = TypeVar("T")
_MASK = (1 << 64) - 1


def key_seed(*key) -> int:
    """A 64-bit seed from a key of ints and strings, e.g. ``("person", 12)``."""
    text = "\x1f".join(f"{type(part).__name__}:{part}" for part in key)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class Rng:
    """splitmix64: ``Rng("variation", 3)`` always yields the same draws."""

    def __init__(self, *key) -> None:
        self._state = key_seed(*key)

    def next_u64(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        """Uniform in [0, 1)."""
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def randint(self, n: int) -> int:
        """Uniform in [0, n)."""
        return self.next_u64() % n  # bias below 2**-40 for the small n used here

    def choice(self, options: Sequence[T]) -> T:
        return options[self.randint(len(options))]

    def normal(self, mean: float = 0.0, std: float = 1.0) -> float:
        u1 = max(self.random(), 1e-12)
        return mean + std * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * self.random())

    def chance(self, p: float) -> bool:
        return self.random() < p


def permute(index: int, size: int, *key) -> int:
    """A keyed bijection of ``range(size)``: a 4-round Feistel network on enough bits, cycle-walked
    until the result falls inside the range. Distinct indices always give distinct results."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} outside range({size})")
    half_bits = max(1, (max(size - 1, 1).bit_length() + 1) // 2)
    half_mask = (1 << half_bits) - 1
    round_keys = [key_seed(*key, "feistel", r) for r in range(4)]
    value = index
    while True:
        left, right = value >> half_bits, value & half_mask
        for round_key in round_keys:
            mixed = key_seed(round_key, right) & half_mask
            left, right = right, left ^ mixed
        value = (left << half_bits) | right
        if value < size:
            return value
