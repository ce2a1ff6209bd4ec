"""The Cholesky transform of eq. (5), the moments it induces on ``mu_k = W~_k h``, eq. (6).

``W~ = rho mu_W + sqrt(1 - rho^2) (rho (sigma_Z / sigma_W) (W - mu_W) + sqrt(1 - rho^2) Z)``
with ``W ~ N(mu_W, sigma_W^2)`` and ``Z ~ N(0, sigma_Z^2)``, element-wise. Writing
``W - mu_W = sigma_W eps`` shows ``sigma_W`` cancels: ``W~ ~ N(rho mu_W, (1 - rho^2) sigma_Z^2)``
and ``corr(W~, W) = rho``. Hence ``mu_k = W~_k h`` is Gaussian with mean ``rho_k (h mu_W)`` and
variance ``(1 - rho_k^2) (h^2 sigma_Z^2)``: the closed form (local reparameterisation) that
samples ``mu_k`` directly instead of a weight matrix per example.

The closed form is written here once and used by both ChoiceNet paths,
:meth:`choicebc.heads.ChoiceNetHead.forward` (batch-first tensors) and the fused loss of
:mod:`choicebc.heads.choicenet_loss` (batch-last): the functions broadcast, so each caller passes
views laid out for its layout.
"""

from __future__ import annotations

import torch
from torch import Tensor

ONE_MINUS_RHO2_FLOOR = 1e-12
"""tanh saturates to exactly +-1 in float32; the gradient of sqrt(1 - rho^2) is then inf.
Flooring 1 - rho^2 keeps it finite (the effect on values is below float32 resolution)."""

LOG_SIGMA0_MAX = 8.0
"""Upper clamp on log Sigma_0: exp never overflows for |h| up to 1e4."""


def one_minus_rho2(rho: Tensor) -> Tensor:
    """``1 - rho^2`` floored at :data:`ONE_MINUS_RHO2_FLOOR`."""
    return (1.0 - rho * rho).clamp_min(ONE_MINUS_RHO2_FLOOR)


def cholesky_transform(
    w: Tensor, z: Tensor, rho: Tensor, mu_w: Tensor, sigma_w: Tensor, sigma_z: Tensor
) -> Tensor:
    """Eq. (5), element-wise and broadcasting: a weight correlated ``rho`` with ``w``.

    Args:
        w: a draw of ``W ~ N(mu_w, sigma_w^2)``.
        z: a draw of ``Z ~ N(0, sigma_z^2)``.
        rho: target correlation(s) in [-1, 1].
        mu_w, sigma_w, sigma_z: the distributions' parameters (``sigma_*`` are std devs).
    """
    s = one_minus_rho2(rho).sqrt()
    return rho * mu_w + s * (rho * (sigma_z / sigma_w) * (w - mu_w) + s * z)  # eq. (5)


def correlated_mean_moments(
    h: Tensor, rho: Tensor, mu_w: Tensor, sigma_z: Tensor
) -> tuple[Tensor, Tensor]:
    """Mean and variance of ``mu_k = W~_k h`` under eq. (5), in closed form.

    Args:
        h: ``(N, Q)`` features.
        rho: ``(N, K)`` correlations.
        mu_w: ``(Q, D)`` target weight mean.
        sigma_z: ``(Q, D)`` std of the auxiliary matrix Z.

    Returns:
        ``mean (N, K, D) = rho_k h mu_w`` and ``var (N, K, D) = (1 - rho_k^2) h^2 sigma_z^2``.
    """
    target = h @ mu_w  # (N, D): mu_1, the target mixture's mean
    spread = (h * h) @ (sigma_z * sigma_z)  # (N, D)
    mean = correlated_means(rho.unsqueeze(-1), target.unsqueeze(1))
    var = one_minus_rho2(rho).unsqueeze(-1) * spread.unsqueeze(1)
    return mean, var


def feature_norm(h: Tensor) -> Tensor:
    """``(N,)`` ``||[h, 1]||`` of features ``h (N, Q)``: the norm of the augmented feature the
    Cholesky Block acts on (finite gradient ``h / ||[h, 1]||``, 0 at ``h = 0``)."""
    return (h * h).sum(-1).add_(1.0).sqrt_()


def noise_sd(sqrt_one_minus: Tensor, h_norm: Tensor, sigma_z: float) -> Tensor:
    """Std of ``mu_k = W~_k [h, 1]`` around its mean, ``sqrt(1 - rho_k^2) ||[h, 1]|| sigma_Z``
    (the closed form above with a scalar sigma_Z: the same for every output d).

    Args:
        sqrt_one_minus: ``sqrt(1 - rho_k^2)`` of the non-target mixtures.
        h_norm: :func:`feature_norm` of the features, laid out to broadcast against it.
        sigma_z: std of the auxiliary matrix Z.
    """
    return sqrt_one_minus.mul(h_norm).mul_(sigma_z)


def correlated_means(
    rho: Tensor,
    target: Tensor,
    sd: Tensor | None = None,
    eps: Tensor | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """``mu_k = rho_k mu_1 + sd_k eps_k``: eq. (5)'s closed form (local reparameterisation).

    Args:
        rho: correlations rho_k, broadcasting against ``target``.
        target: the target mixture's mean mu_1.
        sd: :func:`noise_sd`, broadcasting against ``eps``; with ``eps`` None, no noise
            (the mean rho_k mu_1, as in eval mode).
        eps: standard normal draws, shaped like the result.
        out: where to write the result (the fused loss fills a slice of its means).
    """
    mean = torch.mul(rho, target, out=out)
    if eps is not None:
        mean.addcmul_(sd, eps)
    return mean


def sigma0_from_log(log_sigma0: Tensor) -> Tensor:
    """Sigma_0 from its logit, clamped at :data:`LOG_SIGMA0_MAX` (``exp(-big) = 0`` is
    harmless: tau^-1 keeps every variance positive)."""
    return log_sigma0.clamp(max=LOG_SIGMA0_MAX).exp_()


def mixture_variance(one_minus: Tensor, sigma0: Tensor, tau_inv: float) -> Tensor:
    """Eq. (6): ``Sigma_k = (1 - rho_k^2) Sigma_0 + tau^-1``, broadcasting ``one_minus`` (with
    the target's floored ``1 - 1^2``) against ``sigma0``; ``>= tau_inv``."""
    return (one_minus * sigma0).add_(tau_inv)  # eq. (6)
