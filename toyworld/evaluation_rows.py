"""The evaluation's row names (the tables', results.json's and the plot's), in one place.

A method's row is its display name (ours marked); a masked reference, an oracle, a sweep point and
the two-subject rows add to it. ``IP_ADAPTER_ROW`` is the decoupled baseline's trained weights
written as an IP-Adapter Plus file and applied by the nested rule without training
(``ipadapter_file.py``): what the pack's Loader does with an ``ipadapter:`` file.
"""
from __future__ import annotations

from ..nested_attention_core.methods import NESTED

RENDERS = "renders (upper bound)"
ROUND_TRIP = "renders, VAE round trip"
ORACLE_TEXT = "base + attribute caption (oracle text)"
BASE = "base (no subject)"
IP_ADAPTER_ROW = "decoupled weights through the nested rule (IP-Adapter file, no training)"
WHOLE, MASKED = "whole", "masked"  # how a reference reaches the encoder: as users give it, or masked


def method_row(method) -> str:
    """A method's row (and curve) in the tables: its display name, ours marked."""
    return method.display_name + (" (ours)" if method == NESTED else "")


OURS = method_row(NESTED)
NO_REGIONS = f"{OURS}, no region masks"  # two subjects: the words alone bind them


def masked_row(method: str) -> str:
    return f"{method}, masked reference"


def oracle_row(method: str) -> str:
    return f"{method}, optimised per identity (oracle)"


def masked_methods(methods) -> list[str]:
    """The methods that also get a masked-reference row: the trained ones (not the IP-Adapter file's row)."""
    return [name for name in methods if name != IP_ADAPTER_ROW]


def tick(progress) -> None:
    """One KSampler call done."""
    if progress is not None:
        progress.update(1)
