"""ChoiceNet's regression loss, eq. (7) + (8): the reference and the fused implementation.

:func:`choicenet_loss` scores a :class:`~choicebc.heads.base.Mixture` with autograd; it is what
:meth:`ChoiceNetHead.loss <choicebc.heads.ChoiceNetHead.loss>` computes and the reference the
fused implementation is tested against (tests/test_heads.py compares values and gradients).
:func:`fused_choicenet_loss` computes the same loss from the features in one autograd node
(:class:`FusedChoiceNetLoss`) with a hand-written backward; it is what
:meth:`ChoiceNetHead.training_loss <choicebc.heads.ChoiceNetHead.training_loss>` computes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor

from choicebc.heads import cholesky
from choicebc.heads.base import TARGET_RHO_MIN, Mixture

if TYPE_CHECKING:
    from choicebc.heads.choicenet import ChoiceNetHead


class LossWeights(TypedDict, total=False):
    """Per-step weights of the loss, the keyword arguments of ``ChoiceNetHead.loss`` and
    ``ChoiceNetHead.training_loss`` (all optional; None is the same as leaving one out).

    The demonstration-level choice (:mod:`choicebc.choice`) passes them for its M-step.

    Attributes:
        resp: ``(N, K)`` fixed responsibilities, one row per step. The NLL is then EM's
            expected complete-data one, ``-sum_k resp_k (log pi_k + log N(y; mu_k, var_k))``,
            whose gradient at ``resp`` = the demonstration's posterior is that of the
            demonstration's own log-likelihood.
        l2_weight: ``(N,)`` scale of each step's L2 term (eq. (7)). Default 1; with ``resp``,
            the responsibility of the target's family (the mixtures with ``rho_k >= 0.95``,
            copies of the target), so that ``mu_1`` is pulled towards every step its
            demonstration gives the target, whichever copy took it.
        kl_weight: ``(N,)`` scale of each step's KL term (eq. (8)); default 1.
        tie_weight: ``(N, K)`` in {0, 1}: where 0, mixture k's likelihood does not reach mu_1
            through ``mu_k = rho_k mu_1`` (as ``isolate_target``, per step and mixture); the
            values are unchanged.
    """

    resp: Tensor | None
    l2_weight: Tensor | None
    kl_weight: Tensor | None
    tie_weight: Tensor | None


def check_loss_weights(weights: dict[str, Tensor | None]) -> None:
    """Raise ``TypeError`` for a keyword that is not a :class:`LossWeights` field."""
    known = list(LossWeights.__annotations__)
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise TypeError(f"unexpected loss weight(s) {unknown}; the loss takes {known}")


def choicenet_loss(
    head: ChoiceNetHead, mixture: Mixture, y: Tensor, weights: LossWeights
) -> Tensor:
    """``lambda1 ||y - mu_1||^2 + lambda2 NLL`` (eq. (7)) ``+ kl_weight KL`` (eq. (8)), means
    over the batch, of ``head``'s ``mixture`` against ``y (N, D)``, weighted per step by
    ``weights`` (:class:`LossWeights`). Same value as :meth:`Mixture.log_prob`, fewer ops."""
    check_loss_weights(weights)
    resp, l2_weight = weights.get("resp"), weights.get("l2_weight")
    kl_weight, tie_weight = weights.get("kl_weight"), weights.get("tie_weight")
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
    rho = mixture.rho.detach() if head.kl_stop_grad_rho else mixture.rho
    log_rho_bar = torch.log_softmax(rho, dim=-1)
    kl_rows = F.kl_div(mixture.log_pi, log_rho_bar, reduction="none", log_target=True)
    kl_rows = kl_rows.sum(-1)  # eq. (8), per step
    kl = (kl_rows if kl_weight is None else kl_weight * kl_rows).mean()
    # eq. (7): lambda1 L2 + lambda2 NLL; eq. (8): + kl_weight KL(softmax(rho) || pi)
    nll = 0.5 * log_2pi_d(head) - log_lik
    return head.lambda1 * l2 + head.lambda2 * nll + head.kl_weight * kl


def log_2pi_d(head: ChoiceNetHead) -> float:
    """``D log(2 pi)``, the constant of a D-dimensional Gaussian's -2 log-density."""
    return head.out_features * math.log(2 * math.pi)


def fused_choicenet_loss(head: ChoiceNetHead, h: Tensor, y: Tensor, weights: LossWeights) -> Tensor:
    """:func:`choicenet_loss` of ``head(h)`` in one fused autograd node: the same noise draw,
    value and gradients (up to float rounding), for features ``h (N, Q)``.

    The head's tensors are small ((N, K, D) = 256 x 5 x 6 in a BC step), so its cost is the
    ~40 operators of the head's forward + loss and their ~40 autograd nodes, not arithmetic.
    :class:`FusedChoiceNetLoss` computes the loss without recording a graph and writes the
    gradient of eq. (7) + (8) with respect to the block's output by hand (about half the
    operators); ``choicebc bench train --heads choicenet`` times the training step it is in.
    ``sampling="sample"`` takes the generic path.
    """
    check_loss_weights(weights)
    mode = head.sampling if head.training else "mean"
    if mode == "sample":
        return choicenet_loss(head, head(h), y, weights)
    out = head.block(h)
    n, d, k = h.shape[0], head.out_features, head.k
    eps = None
    if mode == "closed_form":  # the numbers forward() draws, laid out batch-last
        eps = torch.randn(n, k - 1, d, dtype=out.dtype, device=out.device)
        eps = eps.permute(1, 2, 0).contiguous()
    resp, l2_weight = weights.get("resp"), weights.get("l2_weight")
    kl_weight, tie_weight = weights.get("kl_weight"), weights.get("tie_weight")
    batch_last = None
    if any(w is not None for w in (resp, l2_weight, kl_weight, tie_weight)):
        ones = out.new_ones(n)
        batch_last = (
            None if resp is None else resp.t().contiguous(),  # (K, N)
            l2_weight if l2_weight is not None or resp is not None else ones,
            ones if kl_weight is None else kl_weight,
            None if tie_weight is None else tie_weight[:, 1:].t().contiguous(),  # (K-1, N)
        )
    return FusedChoiceNetLoss.apply(out, h, y, eps, head, batch_last)


class FusedChoiceNetLoss(torch.autograd.Function):
    """Eq. (7) + (8) from the block's output ``out (N, 2D + 2K - 1)`` with a hand-written
    backward; :func:`choicenet_loss` of ``ChoiceNetHead.forward`` is the reference.

    Everything is computed batch-last -- ``(K, D, N)`` -- so that every operator runs on
    contiguous memory and the reductions over K and D are vectorised along the batch: on the
    batch-first layout a sum over D = 6 or a tanh of a column slice costs 4-6x as much.
    ``eps (K-1, D, N)`` is the closed-form noise (None: none); its per-example std
    ``sigma_Z ||[h, 1]||`` is computed here from the features ``h (N, Q)``, whose gradient
    through it this returns (the block's gradient to ``h`` is added by autograd).
    ``weights`` is None or ``(resp (K, N) | None, l2_weight (N,), kl_weight (N,),
    tie_weight (K-1, N) | None)``, as in :class:`LossWeights`: fixed responsibilities replace
    the posterior, whose place they take in the backward too.
    """

    @staticmethod
    def forward(ctx, out, h, y, eps, head, weights=None):  # noqa: D102 (autograd protocol)
        d, k, n = head.out_features, head.k, out.shape[0]
        o = out.t().contiguous()  # (2D + 2K - 1, N)
        t, a, b, c = o.split(head.block_sizes, dim=0)  # row blocks: contiguous
        r = torch.tanh(a)  # (K-1, N)
        om_r = cholesky.one_minus_rho2(r)
        om = F.pad(om_r, (0, 0, 1, 0), value=cholesky.ONE_MINUS_RHO2_FLOOR)  # (K, N); rho_1 = 1
        sig0 = cholesky.sigma0_from_log(c)  # (D, N)
        var = cholesky.mixture_variance(om.unsqueeze(1), sig0, head.tau_inv)  # (K, D, N), eq. (6)
        mu = o.new_empty(k, d, n)
        mu[0] = t
        h_norm = sq_om = sd = None
        if eps is not None:  # closed form: sd(mu_k) = sqrt(1 - rho_k^2) sigma_Z ||[h, 1]||
            h_norm = cholesky.feature_norm(h)  # (N,)
            sq_om = om_r.sqrt()
            sd = cholesky.noise_sd(sq_om, h_norm, head.sigma_z).unsqueeze(1)
        cholesky.correlated_means(r.unsqueeze(1), t, sd, eps, out=mu[1:])  # eq. (5), closed form
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
        loss = loss - head.lambda2 * log_lik.sum() / n + head.lambda2 * 0.5 * log_2pi_d(head)
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
        g_c = (
            (g_var * om.unsqueeze(1))
            .sum(0)
            .mul_(sig0)
            .masked_fill_(c > cholesky.LOG_SIGMA0_MAX, 0.0)
        )
        return torch.cat([g_t, g_a, g_b, g_c], dim=0).t(), g_h, None, None, None, None
