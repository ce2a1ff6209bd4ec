"""ChoiceNet's Cholesky Block as a regression / continuous-action head (Choi et al., CVPR 2020).

Mixture 1 is the target (rho_1 = 1) and is what the head predicts; mixtures 2..K are tied to
it by learned correlations rho_k(h) = tanh(W_rho h)_k in (-1, 1): rho ~ -1 explains a flipped
demonstrator, rho ~ 0 random noise (with the larger variance eq. (6) gives it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from choicebc.heads.base import TARGET_RHO_MIN, VAR_FLOOR, Head, Mixture, register_head
from choicebc.heads.cholesky import ONE_MINUS_RHO2_FLOOR, cholesky_transform, one_minus_rho2

LOG_SIGMA0_MAX = 8.0
"""Upper clamp on log Sigma_0: exp never overflows for |h| up to 1e4."""

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
            instead of -1. Measured on ``ChoiceNetRegressor`` (``scripts/reproduce_regression.py
            ablation``, 3 seeds, its defaults otherwise): at 1e-3 mu_1 takes the flipped sign
            on every flipped-example seed (max rho_2 1.00 / 0.89 / 1.00) and the step target
            at 40 % outliers goes wrong (MAE 0.47-0.54), at 0.3 neither; Boston 20 / 40 %
            passes at both (default 0.3).
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
            explains): measured by the robustness report on HalfCheetah-v5, flipped
            step-mixing, 20,000 steps, seed 0, 100 episodes (normalized score, constant ->
            annealed from 1.0 over half the steps): 0 % 93.3 -> 99.5, 10 % 94.7 -> 100.8,
            20 % 94.6 -> 97.9, 30 % 92.0 -> 90.4, 40 % 0.9 -> 81.2 (ROC AUC 0.929 -> 1.000;
            constant lambda1 with training seeds 1 and 2: -0.4, 1.2)
            (default 1.0; :class:`choicebc.ChoiceNetRegressor` keeps the constant, see there).
        lambda1_anneal: share of the training steps over which lambda1 anneals (default 0.5).
        isolate_target: mixtures 2..K see mu_1 as a constant in mu_k = rho_k mu_1 (+ noise):
            their likelihood trains rho_k, pi_k, Sigma_0 and the features through those gates,
            but not mu_1, which only its own likelihood and the L2 of eq. (7) move. Without
            it a mixture at rho_k = -1 can hold mu_1 at the negation of the data (mu_k = -mu_1
            then fits them), regionally and even without outliers (default False: as the
            paper, every mixture's gradient reaches mu_*; :class:`choicebc.ChoiceNetRegressor`
            defaults to True, which its docstring explains and measures).
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
        self._log_2pi_d = out_features * math.log(2 * math.pi)
        self.tau_inv, self.lambda1, self.lambda2 = tau_inv, lambda1, lambda2
        self.kl_weight, self.sigma_z, self.sampling = kl_weight, sigma_z, sampling
        q, d, k = in_features, out_features, n_mixtures
        # One affine map of h for mu_* and the three gates, [mu_* | W_rho | W_pi | W_Sigma0]:
        # a single matmul is most of the head's cost. The mu_* rows carry a bias, i.e. the
        # Cholesky Block acts on the augmented feature [h, 1] (W_* in R^{(Q+1) x D}).
        self.block = torch.nn.Linear(q, d + (k - 1) + k + d)
        self._split = [d, k - 1, k, d]
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
        start = sum(self._split[:index])
        return self.block.bias[start : start + self._split[index]]

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
        target, rho_logit, pi_logit, log_sigma0 = self.block(h).split(self._split, dim=1)
        rho_rest = torch.tanh(rho_logit)  # (N, K-1)
        rho = torch.cat([torch.ones_like(rho_rest[:, :1]), rho_rest], dim=1)  # rho_1 = 1
        one_minus = one_minus_rho2(rho)  # (N, K); column 0 is the floor, ~1e-12
        sigma0 = log_sigma0.clamp(max=LOG_SIGMA0_MAX).exp()  # (N, D); exp(-big) = 0 is harmless
        var = one_minus.unsqueeze(-1) * sigma0.unsqueeze(1) + self.tau_inv  # eq. (6)
        mode = self.sampling if self.training else "mean"
        if mode == "sample":
            others = self._sampled_means(h, rho_rest)
        else:
            tied = target.detach() if self.isolate_target else target
            others = rho_rest.unsqueeze(-1) * tied.unsqueeze(1)  # E[mu_k] = rho_k mu_1
            if mode == "closed_form":
                # local reparameterisation: sd(mu_k) = sqrt(1 - rho_k^2) sigma_Z ||[h, 1]||, the
                # same for every output d as sigma_Z is a scalar (cf. correlated_mean_moments)
                h_norm = torch.linalg.vector_norm(h, dim=-1, keepdim=True)  # grad 0 at h = 0
                h_norm = torch.hypot(h_norm, torch.ones_like(h_norm))  # ||[h, 1]||
                sd = one_minus[:, 1:].sqrt() * (self.sigma_z * h_norm)  # (N, K-1)
                others = others + sd.unsqueeze(-1) * torch.randn_like(others)
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

    def loss(
        self,
        mixture: Mixture,
        y: Tensor,
        resp: Tensor | None = None,
        l2_weight: Tensor | None = None,
        kl_weight: Tensor | None = None,
        tie_weight: Tensor | None = None,
    ) -> Tensor:
        """``lambda1 ||y - mu_1||^2 + lambda2 NLL`` (eq. (7)) ``+ kl_weight KL`` (eq. (8)), means
        over the batch; ``y (N, D)``. Same value as :meth:`Mixture.log_prob`, fewer ops.

        With ``resp (N, K)`` — fixed responsibilities, one row per step, from a choice made per
        demonstration (:mod:`choicebc.choice`) — the NLL is EM's expected complete-data one,
        ``-sum_k resp_k (log pi_k + log N(y; mu_k, var_k))``, whose gradient at ``resp`` = the
        demonstration's posterior is that of the demonstration's own log-likelihood.
        ``l2_weight (N,)`` and ``kl_weight (N,)`` scale each step's L2 and KL terms; by default
        1, and with ``resp`` the L2 weight is the responsibility of the target's family (the
        mixtures with ``rho_k >= 0.95``, copies of the target), so that ``mu_1`` is pulled
        towards every step its demonstration gives the target, whichever copy took it.
        ``tie_weight (N, K)`` in {0, 1}: where 0, mixture k's likelihood does not reach mu_1
        through ``mu_k = rho_k mu_1`` (as ``isolate_target``, per step and mixture); the values
        are unchanged.
        """
        mu = mixture.mu
        if tie_weight is not None:  # same values; no gradient to mu_1 where the weight is 0
            target = mu[:, :1]
            cut = (1.0 - tie_weight[:, 1:]).unsqueeze(-1) * mixture.rho[:, 1:].unsqueeze(-1)
            rest = mu[:, 1:] + cut * (target.detach() - target)
            mu = torch.cat([target, rest], dim=1)
        sq = (y.unsqueeze(1) - mu) ** 2  # (N, K, D)
        log_density = torch.addcdiv(mixture.var.log(), sq, mixture.var).sum(-1)  # x (-1/2), + c
        joint = mixture.log_pi - 0.5 * log_density  # (N, K)
        if resp is None:
            log_lik = torch.logsumexp(joint, dim=-1).mean()  # + c
        else:
            log_lik = (resp * joint).sum(-1).mean()
        if resp is not None and l2_weight is None:
            family = (mixture.rho >= TARGET_RHO_MIN).to(resp.dtype)
            family[:, 0] = 1.0
            l2_weight = (resp * family).sum(-1).detach()
        l2_rows = sq[:, 0].sum(-1)  # eq. (7), first term: ||y - mu_1||^2
        l2 = (l2_rows if l2_weight is None else l2_weight * l2_rows).mean()
        rho = mixture.rho.detach() if self.kl_stop_grad_rho else mixture.rho
        log_rho_bar = torch.log_softmax(rho, dim=-1)
        kl_rows = F.kl_div(mixture.log_pi, log_rho_bar, reduction="none", log_target=True)
        kl_rows = kl_rows.sum(-1)  # eq. (8), per step
        kl = (kl_rows if kl_weight is None else kl_weight * kl_rows).mean()
        # eq. (7): lambda1 L2 + lambda2 NLL; eq. (8): + kl_weight KL(softmax(rho) || pi)
        nll = 0.5 * self._log_2pi_d - log_lik
        return self.lambda1 * l2 + self.lambda2 * nll + self.kl_weight * kl

    def training_loss(
        self,
        h: Tensor,
        y: Tensor,
        resp: Tensor | None = None,
        l2_weight: Tensor | None = None,
        kl_weight: Tensor | None = None,
        tie_weight: Tensor | None = None,
    ) -> Tensor:
        """``loss(self(h), y, resp, l2_weight, kl_weight, tie_weight)`` in one fused autograd
        node: the
        same noise draw, value and gradients (up to float rounding).

        The head's tensors are small ((N, K, D) = 256 x 5 x 6 in a BC step), so its cost is the
        ~40 operators of :meth:`forward` + :meth:`loss` and their ~40 autograd nodes, not
        arithmetic. :class:`_FusedChoiceNetLoss` computes the loss without recording a graph
        and writes the gradient of eq. (7) + (8) with respect to the block's output by hand
        (about half the operators): 2.5 vs 4.1 ms for forward + backward of this head on the
        bench shape here. ``sampling="sample"`` takes the generic path.
        """
        mode = self.sampling if self.training else "mean"
        if mode == "sample":
            return self.loss(self(h), y, resp, l2_weight, kl_weight, tie_weight)
        out = self.block(h)
        n, d, k = h.shape[0], self.out_features, self.k
        eps = None
        if mode == "closed_form":  # the numbers forward() draws, laid out batch-last
            eps = torch.randn(n, k - 1, d, dtype=out.dtype, device=out.device)
            eps = eps.permute(1, 2, 0).contiguous()
        weights = None
        given = (resp, l2_weight, kl_weight, tie_weight)
        if any(w is not None for w in given):
            ones = out.new_ones(n)
            weights = (
                None if resp is None else resp.t().contiguous(),  # (K, N)
                l2_weight if l2_weight is not None or resp is not None else ones,
                ones if kl_weight is None else kl_weight,
                None if tie_weight is None else tie_weight[:, 1:].t().contiguous(),  # (K-1, N)
            )
        return _FusedChoiceNetLoss.apply(out, h, y, eps, self, weights)

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


class _FusedChoiceNetLoss(torch.autograd.Function):
    """Eq. (7) + (8) from the block's output ``out (N, 2D + 2K - 1)`` with a hand-written
    backward; :meth:`ChoiceNetHead.loss` of :meth:`ChoiceNetHead.forward` is the reference
    (tests/test_heads.py compares values and gradients).

    Everything is computed batch-last -- ``(K, D, N)`` -- so that every operator runs on
    contiguous memory and the reductions over K and D are vectorised along the batch: on the
    batch-first layout a sum over D = 6 or a tanh of a column slice costs 4-6x as much.
    ``eps (K-1, D, N)`` is the closed-form noise (None: none); its per-example std
    ``sigma_Z ||[h, 1]||`` is computed here from the features ``h (N, Q)``, whose gradient
    through it this returns (the block's gradient to ``h`` is added by autograd).
    ``weights`` is None or ``(resp (K, N) | None, l2_weight (N,), kl_weight (N,),
    tie_weight (K-1, N) | None)``, as in
    :meth:`ChoiceNetHead.loss`: fixed responsibilities replace the posterior, whose place they
    take in the backward too.
    """

    @staticmethod
    def forward(ctx, out, h, y, eps, head, weights=None):  # noqa: D102 (autograd protocol)
        d, k, n = head.out_features, head.k, out.shape[0]
        o = out.t().contiguous()  # (2D + 2K - 1, N)
        t, a, b, c = o.split(head._split, dim=0)  # row blocks: contiguous
        r = torch.tanh(a)  # (K-1, N)
        om_r = torch.rsub(r * r, 1.0).clamp_min_(ONE_MINUS_RHO2_FLOOR)
        om = F.pad(om_r, (0, 0, 1, 0), value=ONE_MINUS_RHO2_FLOOR)  # (K, N); rho_1 = 1
        sig0 = c.clamp(max=LOG_SIGMA0_MAX).exp_()  # (D, N)
        var = (om.unsqueeze(1) * sig0).add_(head.tau_inv)  # (K, D, N), eq. (6)
        mu = o.new_empty(k, d, n)
        mu[0] = t
        torch.mul(r.unsqueeze(1), t, out=mu[1:])  # E[mu_k] = rho_k mu_1
        h_norm = sq_om = None
        if eps is not None:  # closed form: sd(mu_k) = sqrt(1 - rho_k^2) sigma_Z ||[h, 1]||
            h_norm = (h * h).sum(1).add_(1.0).sqrt_()  # (N,)
            sq_om = om_r.sqrt()
            mu[1:].addcmul_(sq_om.mul(h_norm).mul_(head.sigma_z).unsqueeze(1), eps)
        diff = torch.sub(y.t(), mu)  # (K, D, N)
        inv = var.reciprocal()
        sq_inv = (diff * diff).mul_(inv)
        lp = torch.log_softmax(b, dim=0)  # (K, N)
        log_lik_k = torch.add(lp, var.log_().add_(sq_inv).sum(1), alpha=-0.5)  # (K, N) + c
        fixed, l2_w, kl_w, tie_w = (None, None, None, None) if weights is None else weights
        if fixed is not None and l2_w is None:  # the target family's responsibility
            family = F.pad((r >= TARGET_RHO_MIN).to(fixed.dtype), (0, 0, 1, 0), value=1.0)
            l2_w = (fixed * family).sum(0)
        if fixed is None:
            peak = log_lik_k.amax(0)
            resp = log_lik_k.sub_(peak).exp_()
            total = resp.sum(0)
            resp.div_(total)  # posterior over mixtures
            log_lik = total.log_().add_(peak)  # (N,)
        else:  # EM: the expected complete-data log-likelihood under the given responsibilities
            resp = fixed
            log_lik = (fixed * log_lik_k).sum(0)
        lrb = torch.log_softmax(F.pad(r, (0, 0, 1, 0), value=1.0), dim=0)
        pbar = lrb.exp()
        kl_n = torch.sub(lrb, lp).mul_(pbar).sum(0)  # (N,)
        l2_n = (diff[0] * diff[0]).sum(0)
        if weights is not None:
            kl_n, l2_n = kl_n * kl_w, l2_n * l2_w
        loss = (head.lambda1 * l2_n.sum() + head.kl_weight * kl_n.sum()) / n
        loss = loss - head.lambda2 * log_lik.sum() / n + head.lambda2 * 0.5 * head._log_2pi_d
        ctx.head = head
        ctx.save_for_backward(
            h,
            t,
            r,
            om,
            sig0,
            c,
            diff,
            inv,
            sq_inv,
            resp,
            lp,
            lrb,
            pbar,
            eps,
            sq_om,
            h_norm,
            l2_w,
            kl_w,
            tie_w,
        )
        return loss

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (h, t, r, om, sig0, c, diff, inv, sq_inv, resp, lp, lrb, pbar, eps, sq_om, h_norm) = (
            ctx.saved_tensors[:16]
        )
        l2_w, kl_w, tie_w = ctx.saved_tensors[16:]
        head = ctx.head
        g = float(grad) / t.shape[1]
        g_nll = resp.mul(head.lambda2 * g)  # (K, N): -dLoss/dlog_lik_k
        # d/dmu of -lambda2 log_lik: -g_nll diff / var; of lambda1 ||y - mu_1||^2: -2 diff_1
        g_mu = (g_nll.unsqueeze(1) * inv).mul_(diff).neg_()
        if l2_w is None:
            g_mu[0].add_(diff[0], alpha=-2.0 * head.lambda1 * g)
        else:
            g_mu[0].addcmul_(diff[0], l2_w, value=-2.0 * head.lambda1 * g)
        # d/dvar of -lambda2 log_lik: g_nll (1/var - diff^2/var^2) / 2
        g_var = torch.rsub(sq_inv, 1.0).mul_(inv).mul_((0.5 * g_nll).unsqueeze(1))
        # log_softmax(b) gets the NLL's and the KL's (-sum pbar lp) gradient
        pbar_kl = pbar if kl_w is None else pbar * kl_w
        g_lp = torch.add(g_nll, pbar_kl, alpha=head.kl_weight * g).neg_()
        g_b = torch.addcmul(g_lp, lp.exp(), g_lp.sum(0), value=-1.0)
        g_rest = g_mu[1:]  # (K-1, D, N), mu_k = r_k t + sqrt(1 - r_k^2) scale eps_k
        if head.isolate_target:
            g_t = g_mu[0]
        else:  # mu_k = r_k t reaches t, where the tie weight lets it
            tied_r = r if tie_w is None else r * tie_w
            g_t = (tied_r.unsqueeze(1) * g_rest).sum(0).add_(g_mu[0])
        g_r = (g_rest * t).sum(1)
        g_om = (g_var[1:] * sig0).sum(1)  # var_k = om_k sig0 + tau
        g_h = None
        if eps is not None:
            noise = (g_rest * eps).sum(1)  # (K-1, N)
            g_om.addcmul_(noise, h_norm.mul(0.5 * head.sigma_z) / sq_om)
            g_norm = (noise * sq_om).sum(0).mul_(head.sigma_z)  # d loss / d ||[h, 1]||
            g_h = h * (g_norm / h_norm).unsqueeze(1)
        # om = 1 - r^2 (its floor only binds at r = +-1 exactly, where g_a below is 0 anyway)
        g_r.addcmul_(r, g_om, value=-2.0)
        if not head.kl_stop_grad_rho:  # KL(softmax(rho) || pi) reaches rho through lrb
            g_lrb = torch.sub(lrb, lp).add_(1.0).mul_(pbar_kl).mul_(head.kl_weight * g)
            g_r.add_(torch.addcmul(g_lrb, pbar, g_lrb.sum(0), value=-1.0)[1:])
        g_a = g_r.mul_(om[1:])  # tanh' = 1 - r^2
        g_c = (g_var * om.unsqueeze(1)).sum(0).mul_(sig0).masked_fill_(c > LOG_SIGMA0_MAX, 0.0)
        return torch.cat([g_t, g_a, g_b, g_c], dim=0).t(), g_h, None, None, None, None
