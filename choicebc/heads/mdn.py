"""Mixture density network head (Bishop 1994; robomimic's BC-GMM uses the same design)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from choicebc.heads.base import VAR_FLOOR, Head, Mixture, register_head


@register_head
class MDNHead(Head):
    """K diagonal Gaussians with input-dependent weights, means and softplus std devs.

    Args:
        n_mixtures: K (default 5, robomimic's BC-GMM).
        min_std: floor on each component's std (default 1e-4, as robomimic).
        prediction: ``"mode"`` — mean of the most probable component (default) — or
            ``"mean"`` — the mixture mean.
    """

    name = "mdn"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_mixtures: int = 5,
        min_std: float = 1e-4,
        prediction: str = "mode",
    ) -> None:
        if prediction not in ("mode", "mean"):
            raise ValueError(f"prediction must be 'mode' or 'mean', got {prediction!r}")
        if n_mixtures < 1:
            raise ValueError(f"n_mixtures must be >= 1, got {n_mixtures}")
        super().__init__(
            in_features,
            out_features,
            n_mixtures=n_mixtures,
            min_std=min_std,
            prediction=prediction,
        )
        self.k, self.min_std, self.prediction = n_mixtures, min_std, prediction
        self.logits = torch.nn.Linear(in_features, n_mixtures)
        self.means = torch.nn.Linear(in_features, n_mixtures * out_features)
        self.stds = torch.nn.Linear(in_features, n_mixtures * out_features)

    def forward(self, h: Tensor) -> Mixture:
        n, d = len(h), self.out_features
        std = F.softplus(self.stds(h)).view(n, self.k, d) + self.min_std
        return Mixture(
            log_pi=torch.log_softmax(self.logits(h), dim=-1),
            mu=self.means(h).view(n, self.k, d),
            var=(std * std).clamp_min(VAR_FLOOR),
        )

    def loss(self, mixture: Mixture, y: Tensor) -> Tensor:
        return -mixture.log_prob(y).mean()

    def mode(self, mixture: Mixture) -> Tensor:
        if self.prediction == "mean":
            return (mixture.pi.unsqueeze(-1) * mixture.mu).sum(1)
        best = mixture.log_pi.argmax(dim=-1)
        return mixture.mu[torch.arange(len(best)), best]
