"""The Cholesky transform of eq. (5) and the moments it induces on ``mu_k = W~_k h``.

``W~ = rho mu_W + sqrt(1 - rho^2) (rho (sigma_Z / sigma_W) (W - mu_W) + sqrt(1 - rho^2) Z)``
with ``W ~ N(mu_W, sigma_W^2)`` and ``Z ~ N(0, sigma_Z^2)``, element-wise. Writing
``W - mu_W = sigma_W eps`` shows ``sigma_W`` cancels: ``W~ ~ N(rho mu_W, (1 - rho^2) sigma_Z^2)``
and ``corr(W~, W) = rho``. Hence ``mu_k = W~_k h`` is Gaussian with mean ``rho_k (h mu_W)`` and
variance ``(1 - rho_k^2) (h^2 sigma_Z^2)``: the closed form (local reparameterisation) that
samples ``mu_k`` directly instead of a weight matrix per example.
"""

from __future__ import annotations

from torch import Tensor

ONE_MINUS_RHO2_FLOOR = 1e-12
"""tanh saturates to exactly +-1 in float32; the gradient of sqrt(1 - rho^2) is then inf.
Flooring 1 - rho^2 keeps it finite (the effect on values is below float32 resolution)."""


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
    mean = rho.unsqueeze(-1) * target.unsqueeze(1)
    var = one_minus_rho2(rho).unsqueeze(-1) * spread.unsqueeze(1)
    return mean, var
