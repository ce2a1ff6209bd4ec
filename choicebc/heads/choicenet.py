"""ChoiceNet's Cholesky Block as a regression / continuous-action head (Choi et al., CVPR 2020).

Mixture 1 is the target (rho_1 = 1) and is what the head predicts; mixtures 2..K are tied to
it by learned correlations rho_k(h) = tanh(W_rho h)_k in (-1, 1): rho ~ -1 explains a flipped
demonstrator, rho ~ 0 random noise (with the larger variance eq. (6) gives it).
"""

from __future__ import annotations

import math
from typing import Unpack

import torch
import torch.nn.functional as F
from torch import Tensor

from choicebc.heads.base import VAR_FLOOR, Head, Mixture, register_head
from choicebc.heads.choicenet_loss import LossWeights, choicenet_loss, fused_choicenet_loss
from choicebc.heads.cholesky import (
    cholesky_transform,
    correlated_means,
    feature_norm,
    mixture_variance,
    noise_sd,
    one_minus_rho2,
    sigma0_from_log,
)

SAMPLING_MODES = ("closed_form", "sample", "mean")


def lambda1_schedule(
    lambda1: float, start: float | None, anneal: float, step: int, total: int
) -> float:
    """Eq. (7)'s lambda1 at training step ``step`` of ``total``: a cosine from ``start`` down to
    ``lambda1`` over the first ``anneal`` share of the steps, then ``lambda1``; the constant
    ``lambda1`` when ``start`` is None."""
    span = int(anneal * total)
    if start is None or span == 0 or step >= span:
        return float(lambda1)
    w = 0.5 * (1.0 + math.cos(math.pi * step / span))
    return float(lambda1 + (start - lambda1) * w)


@register_head
class ChoiceNetHead(Head):
    """The Cholesky Block of Algorithm 1 with the regression loss of eq. (7) + KL of eq. (8).

    Args:
        n_mixtures: K, including the target mixture (default 5, as the paper).
        tau_inv: tau^-1, the variance every mixture keeps (eq. (6)); it is the target
            mixture's whole variance, since 1 - rho_1^2 = 0. In units of the (standardised)
            target's variance; it must not be far below the inliers' noise variance, or a
            mixture with rho ~ 1 and a larger variance out-competes the target (default 3e-2,
            for behaviour cloning, whose targets are a deterministic expert's actions;
            :class:`choicebc.ChoiceNetRegressor` keeps 0.03 together with ``isolate_target``).
        lambda1: weight of the L2 loss on mu_1 (eq. (7)); a small pull towards the data that
            makes mu_1 point the right way early in training (default 0.1).
        lambda2: weight of the mixture negative log-likelihood (eq. (7)), default 1.
        kl_weight: weight of KL(softmax(rho) || pi) (eq. (8)). This term is what identifies the
            target: without it the likelihood is unchanged if mu_1 flips sign and a rho = -1
            mixture takes its weight; with it, giving the majority of pi to a rho = -1 mixture
            costs KL. Its gradient also reaches rho (as in the paper) and pulls rho_k towards
            the value softmax(rho) = pi asks for, which holds a flipped mixture at about -0.99
            instead of -1. Much weaker (1e-3) and mu_1 takes the flipped sign (default 0.3;
            docs/design-notes.md, "What identifies the target").
        sigma_z: std of the auxiliary matrix Z (eq. (5)); must be > 0. It sets the sampling
            noise of mu_k: std = sqrt(1 - rho_k^2) * sigma_z * ||h|| (default 1e-2).
        sigma_w_init: std of W_* ~ N(mu_*, sigma_W^2) for ``sampling="sample"``. It cancels in
            eq. (5) (only W - mu_W = sigma_W eps enters, times sigma_Z / sigma_W), so its
            gradient is exactly zero and it is a fixed buffer, not a parameter (default 1e-2).
        sampling: how mu_k is drawn while training: ``"closed_form"`` (default; local
            reparameterisation: mu_k ~ N(rho_k mu_* h, (1 - rho_k^2) h^2 sigma_Z^2) per
            example), ``"sample"`` (one W_*, Z draw per batch through eq. (5)), or ``"mean"``
            (no noise). In eval mode mu_k is always its mean, so mu_1 = mu_* h.
        kl_stop_grad_rho: let the KL of eq. (8) shape pi only (rho_bar is a constant
            target). With the gradient reaching rho, the KL pulls rho_k up wherever pi_k is
            large, which fights rho = -1 for a flipped demonstrator (default False: as the
            paper, the gradient reaches both).
        rho_init: initial correlation of mixtures 2..K (the bias of W_rho is atanh of it).
        lambda1_start: eq. (7)'s lambda1 at the first training step; it anneals (cosine) to
            ``lambda1`` over the first ``lambda1_anneal`` share of the steps
            (:meth:`set_progress`, called by the training loops). An early strong L2 pull
            fits mu_1 to the conditional mean first, which has the expert's sign everywhere
            below 50 % flipped data, before the mixture likelihood sharpens it. With the
            paper's constant lambda1 (``None``) mu_1 settles on the negation of the expert in
            whole regions of the state space (a regional mirror that a rho ~ -1 mixture then
            explains; docs/design-notes.md, "The lambda1 schedule for behaviour cloning")
            (default 1.0; :class:`choicebc.ChoiceNetRegressor` keeps the constant, see there).
        lambda1_anneal: share of the training steps over which lambda1 anneals (default 0.5).
        isolate_target: mixtures 2..K see mu_1 as a constant in mu_k = rho_k mu_1 (+ noise):
            their likelihood trains rho_k, pi_k, Sigma_0 and the features through those gates,
            but not mu_1, which only its own likelihood and the L2 of eq. (7) move. Without
            it a mixture at rho_k = -1 can hold mu_1 at the negation of the data (mu_k = -mu_1
            then fits them), regionally and even without outliers (default False: as the
            paper, every mixture's gradient reaches mu_*; :class:`choicebc.ChoiceNetRegressor`
            defaults to True, which its docstring explains).
    """

    name = "choicenet"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_mixtures: int = 5,
        tau_inv: float = 3e-2,
        lambda1: float = 0.1,
        lambda2: float = 1.0,
        kl_weight: float = 0.3,
        sigma_z: float = 1e-2,
        sigma_w_init: float = 1e-2,
        sampling: str = "closed_form",
        kl_stop_grad_rho: bool = False,
        rho_init: float = 0.0,
        isolate_target: bool = False,
        lambda1_start: float | None = 1.0,
        lambda1_anneal: float = 0.5,
    ) -> None:
        if n_mixtures < 2:
            raise ValueError(f"ChoiceNet needs n_mixtures >= 2 (target + others), got {n_mixtures}")
        if min(sigma_z, sigma_w_init) <= 0 or tau_inv < VAR_FLOOR:
            raise ValueError(f"sigma_z, sigma_w_init must be > 0 and tau_inv >= {VAR_FLOOR}")
        if min(lambda1, lambda2, kl_weight) < 0:
            raise ValueError("lambda1, lambda2 and kl_weight must be >= 0")
        if lambda1_start is not None and lambda1_start < 0:
            raise ValueError(f"lambda1_start must be >= 0 or None, got {lambda1_start}")
        if not 0.0 <= lambda1_anneal <= 1.0:
            raise ValueError(f"lambda1_anneal must be in [0, 1], got {lambda1_anneal}")
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
            kl_stop_grad_rho=kl_stop_grad_rho,
            rho_init=rho_init,
            isolate_target=isolate_target,
            lambda1_start=lambda1_start,
            lambda1_anneal=lambda1_anneal,
        )
        if not -1.0 < rho_init < 1.0:
            raise ValueError(f"rho_init must be in (-1, 1), got {rho_init}")
        self.k = n_mixtures
        self.kl_stop_grad_rho = kl_stop_grad_rho
        self.isolate_target = isolate_target
        self.tau_inv, self.lambda1, self.lambda2 = tau_inv, lambda1, lambda2
        self.kl_weight, self.sigma_z, self.sampling = kl_weight, sigma_z, sampling
        q, d, k = in_features, out_features, n_mixtures
        # One affine map of h for mu_* and the three gates, [mu_* | W_rho | W_pi | W_Sigma0]:
        # a single matmul is most of the head's cost. The mu_* rows carry a bias, i.e. the
        # Cholesky Block acts on the augmented feature [h, 1] (W_* in R^{(Q+1) x D}).
        self.block = torch.nn.Linear(q, d + (k - 1) + k + d)
        self.block_sizes = [d, k - 1, k, d]
        """Row counts of :attr:`block`'s four parts, ``[mu_* | W_rho | W_pi | W_Sigma0]``."""
        # Sigma_* cancels in eq. (5) (only W - mu_* = sigma_W eps enters, times sigma_Z / sigma_W),
        # so a trainable log sigma_W would get an exactly-zero gradient: keep it as a buffer.
        with torch.no_grad():  # rho_k = tanh(W_rho h + b) starts around rho_init
            self.gate_bias("rho").fill_(math.atanh(rho_init))
        self.register_buffer("log_sigma_w", torch.full((q + 1, d), math.log(sigma_w_init)))

    @property
    def mu_w(self) -> Tensor:
        """``(Q + 1, D)`` mu_*, the target weight mean for the augmented feature [h, 1]."""
        d = self.out_features
        return torch.cat([self.block.weight[:d].T, self.block.bias[:d].unsqueeze(0)])

    def gate_bias(self, gate: str) -> Tensor:
        """View of the bias of ``"mu"``, ``"rho"``, ``"pi"`` or ``"sigma0"`` in :attr:`block`."""
        index = ("mu", "rho", "pi", "sigma0").index(gate)
        start = sum(self.block_sizes[:index])
        return self.block.bias[start : start + self.block_sizes[index]]

    def target_mean(self, h: Tensor) -> Tensor:
        """``(N, D)`` mu_1 = mu_* [h, 1], the prediction."""
        d = self.out_features
        return F.linear(h, self.block.weight[:d], self.block.bias[:d])

    def correlations(self, h: Tensor) -> Tensor:
        """``(N, K)`` rho: column 0 is the target's 1, the rest ``tanh(W_rho h)``."""
        d, k = self.out_features, self.k
        rows = slice(d, d + k - 1)
        rest = torch.tanh(F.linear(h, self.block.weight[rows], self.block.bias[rows]))
        return torch.cat([torch.ones_like(rest[:, :1]), rest], dim=1)

    def forward(self, h: Tensor) -> Mixture:
        """Mixture for features ``h (N, Q)``: ``log_pi, rho (N, K)``, ``mu, var (N, K, D)``.

        ``mu[:, 0]`` is exactly ``mu_* [h, 1]`` in every mode (rho_1 = 1 leaves no noise); the
        other means are drawn as ``sampling`` says while training, ``rho_k mu_1`` in eval.
        """
        target, rho_logit, pi_logit, log_sigma0 = self.block(h).split(self.block_sizes, dim=1)
        rho_rest = torch.tanh(rho_logit)  # (N, K-1)
        rho = torch.cat([torch.ones_like(rho_rest[:, :1]), rho_rest], dim=1)  # rho_1 = 1
        one_minus = one_minus_rho2(rho)  # (N, K); column 0 is the floor, ~1e-12
        sigma0 = sigma0_from_log(log_sigma0)  # (N, D)
        var = mixture_variance(one_minus.unsqueeze(-1), sigma0.unsqueeze(1), self.tau_inv)
        mode = self.sampling if self.training else "mean"
        if mode == "sample":
            others = self._sampled_means(h, rho_rest)
        else:
            tied = target.detach() if self.isolate_target else target
            sd = eps = None
            if mode == "closed_form":  # local reparameterisation of eq. (5)
                h_norm = feature_norm(h).unsqueeze(-1)  # (N, 1)
                sd = noise_sd(one_minus[:, 1:].sqrt(), h_norm, self.sigma_z)  # (N, K-1)
                sd = sd.unsqueeze(-1)
                eps = torch.randn(
                    *rho_rest.shape, self.out_features, dtype=h.dtype, device=h.device
                )
            others = correlated_means(rho_rest.unsqueeze(-1), tied.unsqueeze(1), sd, eps)
        return Mixture(
            log_pi=torch.log_softmax(pi_logit, dim=-1),
            mu=torch.cat([target.unsqueeze(1), others], dim=1),
            var=var,  # >= tau_inv >= VAR_FLOOR
            rho=rho,
        )

    def _sampled_means(self, h: Tensor, rho: Tensor) -> Tensor:
        """``(N, K', D)`` mu_k = W~_k [h, 1] for correlations ``rho (N, K')``, with one
        (W_*, Z) draw per batch pushed through eq. (5).

        rho varies per example, so W~_k does too; since eq. (5) is affine in (W, Z) for a
        fixed rho, ``W~_k h`` is assembled from ``mu_* h``, ``(W - mu_*) h`` and ``Z h``
        without materialising a (N, K, Q, D) tensor.
        """
        mu_w = self.mu_w  # (Q + 1, D)
        h1 = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
        sigma_w = self.log_sigma_w.exp()
        w = mu_w + sigma_w * torch.randn_like(mu_w)  # W_* ~ N(mu_*, sigma_W^2)
        z = self.sigma_z * torch.randn_like(mu_w)  # Z ~ N(0, sigma_Z^2)
        r = rho.unsqueeze(-1)  # (N, K', 1)
        basis = torch.stack([h1 @ mu_w, h1 @ ((self.sigma_z / sigma_w) * (w - mu_w)), h1 @ z])
        # eq. (5) with mu_w -> mu_* h, (w - mu) sigma_z / sigma_w -> basis[1], z -> basis[2]
        target = basis[0].detach() if self.isolate_target else basis[0]
        return cholesky_transform(
            w=basis[1].unsqueeze(1) + target.unsqueeze(1),
            z=basis[2].unsqueeze(1),
            rho=r,
            mu_w=target.unsqueeze(1),
            sigma_w=torch.ones_like(r),
            sigma_z=torch.ones_like(r),
        )

    def loss(self, mixture: Mixture, y: Tensor, **weights: Unpack[LossWeights]) -> Tensor:
        """``lambda1 ||y - mu_1||^2 + lambda2 NLL`` (eq. (7)) ``+ kl_weight KL`` (eq. (8)), means
        over the batch; ``y (N, D)``; per-step ``weights`` as
        :class:`~choicebc.heads.choicenet_loss.LossWeights` says
        (:func:`~choicebc.heads.choicenet_loss.choicenet_loss`)."""
        return choicenet_loss(self, mixture, y, weights)

    def training_loss(self, h: Tensor, y: Tensor, **weights: Unpack[LossWeights]) -> Tensor:
        """``loss(self(h), y, **weights)`` for features ``h (N, Q)`` in one fused autograd node
        (:func:`~choicebc.heads.choicenet_loss.fused_choicenet_loss`): the same noise draw,
        value and gradients (up to float rounding), in about half the operators."""
        return fused_choicenet_loss(self, h, y, weights)

    def set_progress(self, step: int, total: int) -> None:
        """Before training step ``step`` of ``total``: eq. (7)'s lambda1 on its schedule
        (:func:`lambda1_schedule`; constant without ``lambda1_start``)."""
        hp = self.hparams  # the constructor's values; self.lambda1 is the current one
        self.lambda1 = lambda1_schedule(
            hp["lambda1"], hp["lambda1_start"], hp["lambda1_anneal"], step, total
        )

    def mode(self, mixture: Mixture) -> Tensor:
        """The target mixture's mean mu_1 (rho_1 = 1)."""
        return mixture.mu[:, 0]
