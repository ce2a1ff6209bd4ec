"""ChoiceNet's Cholesky Block as a regression / continuous-action head (Choi et al., CVPR 2020).

Mixture 1 is the target (rho_1 = 1) and is what the head predicts; mixtures 2..K are tied to
it by learned correlations rho_k(h) = tanh(W_rho h)_k in (-1, 1): rho ~ -1 explains a flipped
demonstrator, rho ~ 0 random noise (with the larger variance eq. (6) gives it).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from choicebc.heads.base import VAR_FLOOR, Head, Mixture, register_head
from choicebc.heads.cholesky import cholesky_transform, correlated_mean_moments, one_minus_rho2

LOG_SIGMA0_RANGE = (-12.0, 8.0)
"""Clamp on log Sigma_0: exp never overflows for |h| up to 1e4."""

SAMPLING_MODES = ("closed_form", "sample", "mean")


@register_head
class ChoiceNetHead(Head):
    """The Cholesky Block of Algorithm 1 with the regression loss of eq. (7) + KL of eq. (8).

    Args:
        n_mixtures: K, including the target mixture (default 5, as the paper).
        tau_inv: tau^-1, the variance every mixture keeps (eq. (6)); it is the target
            mixture's whole variance, since 1 - rho_1^2 = 0 (default 1e-2).
        lambda1: weight of the L2 loss on mu_1 (eq. (7)). Non-zero breaks the sign symmetry
            of tanh rho: with lambda1 = 0 a network can fit mu_1 = -y with every rho_k = -1
            and pi split (see docs); default 0.1.
        lambda2: weight of the mixture negative log-likelihood (eq. (7)), default 1.
        kl_weight: weight of KL(softmax(rho) || pi) (eq. (8)), default 1e-3.
        sigma_z: std of the auxiliary matrix Z (eq. (5)); must be > 0. It sets the sampling
            noise of mu_k: std = sqrt(1 - rho_k^2) * sigma_z * ||h|| (default 1e-2).
        sigma_w_init: std of W_* ~ N(mu_*, sigma_W^2) for ``sampling="sample"``. It cancels in
            eq. (5) (only W - mu_W = sigma_W eps enters, times sigma_Z / sigma_W), so its
            gradient is exactly zero and it is a fixed buffer, not a parameter (default 1e-2).
        sampling: how mu_k is drawn while training: ``"closed_form"`` (default; local
            reparameterisation: mu_k ~ N(rho_k mu_* h, (1 - rho_k^2) h^2 sigma_Z^2) per
            example), ``"sample"`` (one W_*, Z draw per batch through eq. (5)), or ``"mean"``
            (no noise). In eval mode mu_k is always its mean, so mu_1 = mu_* h.
    """

    name = "choicenet"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_mixtures: int = 5,
        tau_inv: float = 1e-2,
        lambda1: float = 0.1,
        lambda2: float = 1.0,
        kl_weight: float = 1e-3,
        sigma_z: float = 1e-2,
        sigma_w_init: float = 1e-2,
        sampling: str = "closed_form",
    ) -> None:
        if n_mixtures < 2:
            raise ValueError(f"ChoiceNet needs n_mixtures >= 2 (target + others), got {n_mixtures}")
        if min(sigma_z, tau_inv, sigma_w_init) <= 0:
            raise ValueError("sigma_z, tau_inv and sigma_w_init must be > 0")
        if min(lambda1, lambda2, kl_weight) < 0:
            raise ValueError("lambda1, lambda2 and kl_weight must be >= 0")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        super().__init__(
            in_features,
            out_features,
            n_mixtures=n_mixtures,
            tau_inv=tau_inv,
            lambda1=lambda1,
            lambda2=lambda2,
            kl_weight=kl_weight,
            sigma_z=sigma_z,
            sigma_w_init=sigma_w_init,
            sampling=sampling,
        )
        self.k = n_mixtures
        self.tau_inv, self.lambda1, self.lambda2 = tau_inv, lambda1, lambda2
        self.kl_weight, self.sigma_z, self.sampling = kl_weight, sigma_z, sampling
        q, d = in_features, out_features
        bound = 1.0 / math.sqrt(q)
        self.mu_w = torch.nn.Parameter(torch.empty(q, d).uniform_(-bound, bound))  # mu_*
        # Sigma_* cancels in eq. (5) (only W - mu_* = sigma_W eps enters, times sigma_Z / sigma_W),
        # so a trainable log sigma_W would get an exactly-zero gradient: keep it as a buffer.
        self.register_buffer("log_sigma_w", torch.full((q, d), math.log(sigma_w_init)))
        self.rho_layer = torch.nn.Linear(q, n_mixtures - 1)  # W_{h->rho}
        self.pi_layer = torch.nn.Linear(q, n_mixtures)  # W_{h->pi}
        self.sigma0_layer = torch.nn.Linear(q, d)  # W_{h->Sigma_0}

    def correlations(self, h: Tensor) -> Tensor:
        """``(N, K)`` rho: column 0 is the target's 1, the rest ``tanh(W_rho h)``."""
        rest = torch.tanh(self.rho_layer(h))
        return torch.cat([torch.ones_like(rest[:, :1]), rest], dim=1)

    def forward(self, h: Tensor) -> Mixture:
        """Mixture for features ``h (N, Q)``: ``log_pi, rho (N, K)``, ``mu, var (N, K, D)``.

        ``mu[:, 0]`` is exactly ``mu_* h`` in every mode (rho_1 = 1 leaves no noise); the other
        means are drawn as ``sampling`` says while training and are ``rho_k mu_* h`` in eval.
        """
        rho = self.correlations(h)  # (N, K)
        log_pi = torch.log_softmax(self.pi_layer(h), dim=-1)
        log_sigma0 = self.sigma0_layer(h).clamp(*LOG_SIGMA0_RANGE)
        sigma0 = log_sigma0.exp().unsqueeze(1)  # (N, 1, D)
        var = one_minus_rho2(rho).unsqueeze(-1) * sigma0 + self.tau_inv  # eq. (6)
        sigma_z = torch.full_like(self.mu_w, self.sigma_z)
        mode = self.sampling if self.training else "mean"
        if mode == "sample":
            others = self._sampled_means(h, rho[:, 1:], sigma_z)
        else:
            mean, mean_var = correlated_mean_moments(h, rho[:, 1:], self.mu_w, sigma_z)
            others = mean
            if mode == "closed_form":  # local reparameterisation of mu_k = W~_k h
                others = mean + mean_var.sqrt() * torch.randn_like(mean)
        target = (h @ self.mu_w).unsqueeze(1)  # mu_1 = mu_* h  (rho_1 = 1)
        mu = torch.cat([target, others], dim=1)
        return Mixture(log_pi=log_pi, mu=mu, var=var.clamp_min(VAR_FLOOR), rho=rho)

    def _sampled_means(self, h: Tensor, rho: Tensor, sigma_z: Tensor) -> Tensor:
        """``(N, K', D)`` mu_k = W~_k h for correlations ``rho (N, K')``, one (W_*, Z) draw per
        batch pushed through eq. (5).

        rho varies per example, so W~_k does too; since eq. (5) is affine in (W, Z) for a
        fixed rho, ``W~_k h`` is assembled from ``mu_* h``, ``(W - mu_*) h`` and ``Z h``
        without materialising a (N, K, Q, D) tensor.
        """
        sigma_w = self.log_sigma_w.exp()
        w = self.mu_w + sigma_w * torch.randn_like(self.mu_w)  # W_* ~ N(mu_*, sigma_W^2)
        z = sigma_z * torch.randn_like(self.mu_w)  # Z ~ N(0, sigma_Z^2)
        r = rho.unsqueeze(-1)  # (N, K', 1)
        basis = torch.stack([h @ self.mu_w, h @ ((sigma_z / sigma_w) * (w - self.mu_w)), h @ z])
        # eq. (5) with mu_w -> mu_* h, (w - mu) sigma_z / sigma_w -> basis[1], z -> basis[2]
        return cholesky_transform(
            w=basis[1].unsqueeze(1) + basis[0].unsqueeze(1),
            z=basis[2].unsqueeze(1),
            rho=r,
            mu_w=basis[0].unsqueeze(1),
            sigma_w=torch.ones_like(r),
            sigma_z=torch.ones_like(r),
        )

    def loss(self, mixture: Mixture, y: Tensor) -> Tensor:
        nll = -mixture.log_prob(y).mean()  # eq. (7), second term
        l2 = ((y - mixture.mu[:, 0]) ** 2).sum(-1).mean()  # eq. (7), first term
        rho_bar = torch.softmax(mixture.rho, dim=-1)
        kl = (rho_bar * (torch.log_softmax(mixture.rho, dim=-1) - mixture.log_pi)).sum(-1)
        return self.lambda1 * l2 + self.lambda2 * nll + self.kl_weight * kl.mean()  # eq. (8)

    def mode(self, mixture: Mixture) -> Tensor:
        """The target mixture's mean mu_1 (rho_1 = 1)."""
        return mixture.mu[:, 0]
