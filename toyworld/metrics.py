"""Verification and retrieval metrics on embeddings; plain torch, no model."""
from __future__ import annotations

from typing import Sequence

import torch


def roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve: the chance that a random positive outscores a random negative
    (ties count half). ``scores``: [n] floats; ``positive``: [n] bools."""
    scores, positive = scores.double().flatten(), positive.bool().flatten()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs at least one positive and one negative")
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.double)
    unique, inverse, counts = torch.unique(sorted_scores, return_inverse=True, return_counts=True)
    if len(unique) < len(scores):  # average ranks of ties
        ends = torch.cumsum(counts, 0).double()
        mean_rank = ends - (counts.double() - 1) / 2
        ranks[order] = mean_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def verification(embeddings: torch.Tensor, groups: Sequence[str], domains: Sequence[str]) -> dict[str, float]:
    """Cosine statistics over all pairs of distinct images: same identity vs different identity of the
    same domain (the hard negatives), and vs the other domain; ROC-AUC of same vs different (same domain)."""
    e = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    cos = e @ e.T
    group_ids = _codes(groups)
    domain_ids = _codes(domains)
    upper = torch.triu(torch.ones_like(cos, dtype=torch.bool), diagonal=1)
    same = (group_ids[:, None] == group_ids[None, :]) & upper
    same_domain = (domain_ids[:, None] == domain_ids[None, :]) & upper
    different = same_domain & ~same
    other_domain = upper & ~same_domain
    pairs = same | different
    report = {"same_identity_cos": float(cos[same].mean()), "different_identity_cos": float(cos[different].mean()),
              "roc_auc": roc_auc(cos[pairs], same[pairs]), "same_pairs": int(same.sum()),
              "different_pairs": int(different.sum())}
    if other_domain.any():
        report["other_domain_cos"] = float(cos[other_domain].mean())
    return report


def retrieval_top1(gallery: torch.Tensor, probes: torch.Tensor, probe_targets: torch.Tensor) -> float:
    """Fraction of probes whose most similar gallery row is their own identity's.
    gallery: [k, d]; probes: [n, d]; probe_targets: [n] gallery row indices."""
    g = torch.nn.functional.normalize(gallery, dim=-1)
    p = torch.nn.functional.normalize(probes, dim=-1)
    return float(((p @ g.T).argmax(dim=1) == probe_targets).double().mean())


def _codes(values: Sequence[str]) -> torch.Tensor:
    index = {v: i for i, v in enumerate(dict.fromkeys(values))}
    return torch.tensor([index[v] for v in values])
