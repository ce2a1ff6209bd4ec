"""Single-output heads (``K = 1``): plain L2, L1, and Tukey's biweight robust loss."""

from __future__ import annotations

import torch
from torch import Tensor

from choicebc.heads.base import Head, Mixture, register_head


class PointHead(Head):
    """A linear map ``h -> y`` presented as a one-component mixture with unit variance."""

    def __init__(self, in_features: int, out_features: int, **hparams) -> None:
        super().__init__(in_features, out_features, **hparams)
        self.linear = torch.nn.Linear(in_features, out_features)

    def forward(self, h: Tensor) -> Mixture:
        mu = self.linear(h).unsqueeze(1)
        return Mixture(log_pi=mu.new_zeros(len(h), 1), mu=mu, var=torch.ones_like(mu))


@register_head
class MSEHead(PointHead):
    """Plain behaviour cloning: mean squared error."""

    name = "mse"

    def loss(self, mixture: Mixture, y: Tensor) -> Tensor:
        return ((mixture.mu[:, 0] - y) ** 2).mean()


@register_head
class L1Head(PointHead):
    """Mean absolute error: the median regressor, robust to a minority of outliers."""

    name = "l1"

    def loss(self, mixture: Mixture, y: Tensor) -> Tensor:
        return (mixture.mu[:, 0] - y).abs().mean()


TUKEY_C = 4.6851
"""Tukey's constant: 95 % asymptotic efficiency on Gaussian residuals."""
MAD_TO_STD = 1.4826
"""Median absolute deviation -> standard deviation for Gaussian residuals."""


@register_head
class TukeyHead(PointHead):
    """Tukey's biweight loss on MAD-scaled residuals (Belagiannis et al., ICCV 2015).

    Residuals are divided by ``1.4826 * MAD`` of the batch's residuals (per output, detached);
    a scaled residual beyond ``c = 4.6851`` costs a constant, so gross outliers stop pulling.

    Args:
        c: the biweight's cut-off (default 4.6851).
    """

    name = "robust"

    def __init__(self, in_features: int, out_features: int, c: float = TUKEY_C) -> None:
        super().__init__(in_features, out_features, c=c)
        self.c = c

    def loss(self, mixture: Mixture, y: Tensor) -> Tensor:
        residual = y - mixture.mu[:, 0]
        with torch.no_grad():
            med = residual.median(dim=0).values
            mad = (residual - med).abs().median(dim=0).values
            scale = (MAD_TO_STD * mad).clamp_min(1e-6)
        r = residual / scale
        c2 = self.c**2
        inside = (c2 / 6) * (1 - (1 - (r / self.c) ** 2) ** 3)
        return torch.where(r.abs() <= self.c, inside, torch.full_like(r, c2 / 6)).mean()
