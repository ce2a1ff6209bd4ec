"""How well quality scores find corrupt data: one ROC AUC for steps and demonstrations."""

from __future__ import annotations

import numpy as np


def roc_auc(quality: np.ndarray, is_corrupt: np.ndarray) -> float | None:
    """ROC AUC of ``quality`` (high = clean) ranking clean items above corrupt ones.

    Ties count half (the Mann-Whitney statistic). Returns ``None`` when ``is_corrupt`` holds a
    single class, where no AUC exists.
    """
    corrupt = np.asarray(is_corrupt, dtype=bool).ravel()
    quality = np.asarray(quality, dtype=np.float64).ravel()
    if quality.shape != corrupt.shape:
        raise ValueError(f"quality has {quality.size} scores for {corrupt.size} labels")
    n_corrupt = int(corrupt.sum())
    n_clean = corrupt.size - n_corrupt
    if n_corrupt == 0 or n_clean == 0:
        return None
    order = np.argsort(quality, kind="mergesort")
    ranks = np.empty(quality.size, dtype=np.float64)
    sorted_q = quality[order]
    # average ranks over ties (1-based)
    _, first, counts = np.unique(sorted_q, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    clean_rank_sum = ranks[~corrupt].sum()
    return float((clean_rank_sum - n_clean * (n_clean + 1) / 2.0) / (n_clean * n_corrupt))


CORRUPT_EPISODE_SHARE = 0.5
"""an episode counts as corrupt, for the per-demonstration AUC, when this share of its steps is"""


def demo_roc_auc(demo_quality: np.ndarray, adversary_share: np.ndarray) -> float | None:
    """ROC AUC of per-episode scores, an episode counting as corrupt when its adversary drove
    at least :data:`CORRUPT_EPISODE_SHARE` of its steps (``None`` with a single class)."""
    return roc_auc(demo_quality, np.asarray(adversary_share) >= CORRUPT_EPISODE_SHARE)
