"""Classification heads: ChoiceNet's eq. (9) loss on correlated logit mixtures, and baselines.

Every head here reads targets as **integer class labels** ``y (N,)`` (``int64``, or ``(N, 1)``)
in ``[0, C)``, where ``C = out_features`` is the number of classes; ``mode`` returns labels
``(N,) int64`` and :meth:`ClassifierHead.probabilities` the deployed class probabilities
``(N, C)``. The :class:`~choicebc.heads.base.Mixture` holds *logits*: ``mu (N, K, C)`` are the K
components' logit means and ``var (N, K, C)`` their logit variances.

Registered names:

- ``choicenet_cls`` — :class:`ChoiceNetClassifierHead`, the Cholesky Block with eq. (9) + (8).
- ``ce`` — :class:`CrossEntropyHead`, plain softmax cross-entropy.
- ``fcorrection`` — :class:`ForwardCorrectionHead`, Patrini et al.'s forward loss correction
  (CVPR 2017) with a transition matrix from :func:`estimate_transition_matrix`.
- ``mdn_cls`` — :class:`MixtureClassifierHead`, an MDN-style mixture of K softmax classifiers
  trained by its likelihood.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from choicebc.heads.base import VAR_FLOOR, Head, Mixture, register_head
from choicebc.heads.choicenet import ChoiceNetHead
from choicebc.heads.mdn import MDNHead

ANCHOR_PERCENTILE = 97.0
"""Patrini et al.'s outlier filter: the anchor of class i is the most confident example below
this percentile of p(y~ = i | x), not the argmax (which is often a memorised outlier)."""

PROB_FLOOR = 1e-12
"""Floor on a corrected class probability before its log (a zero entry of T is legal)."""


def check_labels(y: Tensor, n_classes: int) -> Tensor:
    """``y`` as ``(N,) int64`` labels in ``[0, n_classes)``; ``ValueError`` otherwise.

    Accepts ``(N,)`` or ``(N, 1)`` integer tensors. Floating-point labels are refused even when
    integral, so a regression target passed to a classifier head fails loudly.
    """
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise ValueError(f"labels must have shape (N,) or (N, 1), got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(
            f"labels must be an integer tensor of class indices, got dtype {y.dtype}; "
            "convert with y.long() after checking the values are whole numbers"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}), got range [{int(y.min())}, {int(y.max())}]"
        )
    return y.long()


class ClassifierHead(Head):
    """Shared behaviour of the classification heads: labels in, labels and probabilities out.

    The deployed classifier is component 0: ``probabilities = softmax(mu[:, 0])``.
    """

    @property
    def n_classes(self) -> int:
        """C, the number of classes (``out_features``)."""
        return self.out_features

    def probabilities(self, mixture: Mixture) -> Tensor:
        """``(N, C)`` class probabilities of the deployed (target) classifier."""
        return torch.softmax(mixture.mu[:, 0], dim=-1)

    def mode(self, mixture: Mixture) -> Tensor:
        """``(N,) int64`` most probable class under :meth:`probabilities`."""
        return self.probabilities(mixture).argmax(dim=-1)

    # the generic loss(self(h), y), not ChoiceNet's fused regression loss, which
    # ``choicenet_cls`` would otherwise inherit (it does not apply to labels)
    training_loss = Head.training_loss

    def target_posterior(self, mixture: Mixture, y: Tensor) -> Tensor:
        """``(N,)`` probability that label ``y`` came from the clean/target process.

        Only heads with a noise model define it; the others raise ``ValueError``.
        """
        raise ValueError(
            f"head {self.name!r} has no noise model, so it cannot score label quality; "
            "use 'choicenet_cls' or 'fcorrection'"
        )


@register_head
class ChoiceNetClassifierHead(ClassifierHead, ChoiceNetHead):
    """The Cholesky Block producing K correlated logit mixtures, trained with eq. (9) + eq. (8).

    Forward is :class:`~choicebc.heads.choicenet.ChoiceNetHead`'s (Algorithm 1) with ``D = C``:
    ``mu_k = W~_k [h, 1]`` are logit means correlated ``rho_k`` with the target's ``mu_1``, and
    ``Sigma_k = (1 - rho_k^2) Sigma_0 + tau^-1`` their variances (eq. (6)). A component with
    ``rho = -1`` predicts ``softmax(-mu_1)``: its mass goes to the classes the target finds
    unlikely, which is where symmetrically flipped labels land.

    Loss, eq. (9) in its minimised form. The paper prints ``L = -1/N sum_i sum_k pi_k l_k``
    with ``l_k = <softmax(y^_k), y_i> - lambda_reg logsumexp(y^_k)``; minimising it maximises
    the agreement and *minimises* the logsumexp, so here::

        L = 1/N sum_i sum_k pi_k(x_i) [ -softmax(y^_k)[y_i] + lambda_reg logsumexp(y^_k) ]
            + kl_weight KL(softmax(rho) || pi)                                    (eq. (8))

    with sampled logits ``y^_k = mu_k + sqrt(Sigma_k) eps``, ``eps ~ N(0, I)`` (``eps = 0`` in
    eval mode). The agreement is bounded by 1, so, unlike cross-entropy, a label the target
    finds implausible stops pulling on it: that is where the robustness comes from. The
    logsumexp term is unbounded below along a common shift of all logits (softmax ignores
    it), so ``lambda_reg`` must stay small: larger ones let the logits drift to -inf; the
    paper's 1e-4 is harmless. Prediction uses the target mixture (rho_1 = 1).

    Eq. (9) is linear in pi, so for noise that does not depend on x the best pi puts all
    weight on the best component, and a component whose rho drifts up to 1 becomes a copy of
    the target: the mixture then says nothing about which labels are wrong. The defaults
    avoid that: the noise components start anti-correlated (``rho_init``) with pi at the KL's
    optimum for that start, and the KL weight (0.1) is large enough to keep them alive.
    ``tau_inv = 1`` keeps the target's softmax from saturating early, where a class the target
    gets wrong at first would otherwise stay wrong (no gradient), explained by a rho = -1
    component. With ``n_mixtures > 2`` the anti-correlated components outweigh the target early
    on and it can learn some classes upside down, so the default is 2. The measurements behind
    each default: docs/design-notes.md, "The classifier's defaults"
    (``scripts/reproduce_classification.py --ablation``).

    Labels: ``y (N,)`` or ``(N, 1)`` integer class indices in ``[0, C)``.

    Args:
        n_mixtures: K including the target (default 2).
        tau_inv: tau^-1, the variance every component's logits keep (eq. (6)); default 1.
        lambda_reg: weight of the logsumexp term of eq. (9) (paper: 1e-4; 1e-3 for CIFAR-100).
        kl_weight: weight of KL(softmax(rho) || pi) (eq. (8)); default 0.1.
        rho_init: initial correlation of mixtures 2..K (default -0.5); pi starts at
            ``softmax([1, rho_init, ...])``.
        lambda1: weight of a cross-entropy term on the target's logits ``mu_1``, the analogue
            of eq. (7)'s ``lambda1 ||y - mu_1||^2`` pull of the regression head (default 0:
            eq. (9) alone). The agreement's gradient vanishes for a class the target gives
            ~0 probability, so a class the target misses early on can stay unlearned,
            explained by the ``rho = -1`` mixture; the CE term keeps a gradient there. Kept on
            for the whole run it makes the target learn the noisy label distribution, hence
            ``lambda1_steps`` (docs/design-notes.md, "The cross-entropy warm-up for discrete
            actions").
        lambda1_steps: train with the CE term only for this many training-mode loss calls
            (a warm-up; 0: for the whole run). The count is a buffer of the head, so it is
            saved with the weights and a resumed run continues it.
        sigma_z, sigma_w_init, sampling: as :class:`~choicebc.heads.choicenet.ChoiceNetHead`.
    """

    name = "choicenet_cls"

    # eq. (7)'s lambda1 schedule belongs to the regression parent; this head's CE warm-up
    # counts its own loss calls (``lambda1_steps``)
    set_progress = Head.set_progress

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_mixtures: int = 2,
        tau_inv: float = 1.0,
        lambda_reg: float = 1e-4,
        kl_weight: float = 0.1,
        rho_init: float = -0.5,
        sigma_z: float = 1e-2,
        sigma_w_init: float = 1e-2,
        sampling: str = "closed_form",
        lambda1: float = 0.0,
        lambda1_steps: int = 0,
    ) -> None:
        if out_features < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {out_features}")
        if lambda_reg < 0 or kl_weight < 0 or lambda1 < 0 or lambda1_steps < 0:
            raise ValueError("lambda_reg, kl_weight, lambda1 and lambda1_steps must be >= 0")
        super().__init__(
            in_features,
            out_features,
            n_mixtures=n_mixtures,
            tau_inv=tau_inv,
            kl_weight=kl_weight,
            sigma_z=sigma_z,
            sigma_w_init=sigma_w_init,
            sampling=sampling,
            rho_init=rho_init,
        )
        # config() must rebuild this class, whose arguments differ from the regression head's
        self.hparams = {
            "n_mixtures": n_mixtures,
            "tau_inv": tau_inv,
            "lambda_reg": lambda_reg,
            "kl_weight": kl_weight,
            "rho_init": rho_init,
            "sigma_z": sigma_z,
            "sigma_w_init": sigma_w_init,
            "sampling": sampling,
            "lambda1": lambda1,
            "lambda1_steps": lambda1_steps,
        }
        self.lambda_reg = lambda_reg
        self.ce_weight = lambda1  # not self.lambda1: the regression parent's attribute
        self.ce_steps = int(lambda1_steps)
        if self.ce_steps:  # only then: heads saved without a warm-up keep their state keys
            self.register_buffer("ce_calls", torch.zeros((), dtype=torch.int64))
        with torch.no_grad():
            # pi starts at eq. (8)'s optimum for rho's start, softmax([1, rho_init, ...]): from
            # a uniform pi the KL would pull every rho_k up towards 1 (copies of the target).
            self.gate_bias("pi").zero_()
            self.gate_bias("pi")[0] = 1.0 - rho_init

    def loss(self, mixture: Mixture, y: Tensor) -> Tensor:
        """Eq. (9) (minimised form) + ``kl_weight`` * eq. (8); ``y (N,)`` integer labels."""
        y = check_labels(y, self.n_classes)
        eps = torch.randn_like(mixture.mu) if self.training else torch.zeros_like(mixture.mu)
        logits = mixture.mu + mixture.var.sqrt() * eps  # y^_k, (N, K, C)
        agreement = torch.softmax(logits, dim=-1)[torch.arange(len(y)), :, y]  # (N, K)
        size = torch.logsumexp(logits, dim=-1)  # (N, K)
        per_component = -agreement + self.lambda_reg * size  # -l_k of eq. (9)
        fit = (mixture.pi * per_component).sum(-1).mean()  # eq. (9)
        log_rho_bar = torch.log_softmax(mixture.rho, dim=-1)
        kl = F.kl_div(mixture.log_pi, log_rho_bar, reduction="batchmean", log_target=True)  # (8)
        loss = fit + self.kl_weight * kl
        if self.ce_weight and self._ce_active():  # eq. (7)-style pull on the target (lambda1)
            loss = loss + self.ce_weight * F.cross_entropy(mixture.mu[:, 0], y)
        return loss

    def _ce_active(self) -> bool:
        """Whether this loss call includes the CE term; counts training-mode calls."""
        if not self.ce_steps:
            return True
        if not (self.training and torch.is_grad_enabled()):  # validation: as in training now
            return bool(self.ce_calls < self.ce_steps)
        active = bool(self.ce_calls < self.ce_steps)
        self.ce_calls += 1
        return active

    def component_likelihoods(self, mixture: Mixture, y: Tensor) -> Tensor:
        """``(N, K)`` ``softmax(mu_k)[y]``: each component's probability of label ``y``."""
        y = check_labels(y, self.n_classes)
        return torch.softmax(mixture.mu, dim=-1)[torch.arange(len(y)), :, y]

    def target_posterior(self, mixture: Mixture, y: Tensor) -> Tensor:
        """``(N,)`` responsibility of the target mixture for label ``y`` (Bayes' rule on pi)."""
        joint = mixture.pi * self.component_likelihoods(mixture, y)
        return joint[:, 0] / joint.sum(-1).clamp_min(PROB_FLOOR)


@register_head
class CrossEntropyHead(ClassifierHead):
    """A linear layer to C logits trained with softmax cross-entropy (the plain baseline)."""

    name = "ce"

    def __init__(self, in_features: int, out_features: int, **hparams: Any) -> None:
        if out_features < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {out_features}")
        super().__init__(in_features, out_features, **hparams)
        self.linear = torch.nn.Linear(in_features, out_features)

    def forward(self, h: Tensor) -> Mixture:
        logits = self.linear(h).unsqueeze(1)  # (N, 1, C)
        return Mixture(
            log_pi=logits.new_zeros(len(h), 1),
            mu=logits,
            var=torch.full_like(logits, VAR_FLOOR),
        )

    def loss(self, mixture: Mixture, y: Tensor) -> Tensor:
        return F.cross_entropy(mixture.mu[:, 0], check_labels(y, self.n_classes))


@register_head
class ForwardCorrectionHead(CrossEntropyHead):
    """Forward loss correction (Patrini et al., CVPR 2017): ``-log (softmax(z)^T T)[y~]``.

    ``T[i, j] = P(noisy label j | clean label i)``. The network's softmax stays an estimate of
    the *clean* posterior and is what :meth:`probabilities` returns; only the loss sees the
    noise. Estimate ``T`` with :func:`estimate_transition_matrix` from a cross-entropy model
    trained on the same noisy data (``ChoiceNetClassifier(head="fcorrection")`` does both).

    Args:
        transition: ``C x C`` row-stochastic matrix as nested lists (default: identity,
            which makes this head plain cross-entropy).
    """

    name = "fcorrection"

    def __init__(
        self, in_features: int, out_features: int, transition: list[list[float]] | None = None
    ) -> None:
        super().__init__(in_features, out_features, transition=transition)
        if transition is None:
            t = torch.eye(out_features)
        else:
            t = torch.as_tensor(np.asarray(transition, dtype=np.float32))
            if t.shape != (out_features, out_features):
                raise ValueError(
                    f"transition must be {out_features} x {out_features}, got {tuple(t.shape)}"
                )
            if not torch.isfinite(t).all() or (t < 0).any():
                raise ValueError("transition entries must be finite and >= 0")
            if not torch.allclose(t.sum(1), torch.ones(out_features), atol=1e-4):
                raise ValueError("transition rows must sum to 1 (T[i, j] = P(j | clean i))")
        self.register_buffer("transition", t)

    def loss(self, mixture: Mixture, y: Tensor) -> Tensor:
        y = check_labels(y, self.n_classes)
        noisy = self.probabilities(mixture) @ self.transition  # P(y~ | x), (N, C)
        return -noisy[torch.arange(len(y)), y].clamp_min(PROB_FLOOR).log().mean()

    def target_posterior(self, mixture: Mixture, y: Tensor) -> Tensor:
        """``(N,)`` P(clean label == y~ | x, y~) = p(y~) T[y~, y~] / (p^T T)[y~]."""
        y = check_labels(y, self.n_classes)
        p = self.probabilities(mixture)
        rows = torch.arange(len(y))
        kept = p[rows, y] * self.transition[y, y]
        return kept / (p @ self.transition)[rows, y].clamp_min(PROB_FLOOR)


def estimate_transition_matrix(
    probs: np.ndarray, percentile: float | None = ANCHOR_PERCENTILE
) -> np.ndarray:
    """Patrini et al.'s anchor-point estimate of ``T`` from noisy-label class posteriors.

    For each class i the anchor is the example with the largest ``p(y~ = i | x)`` strictly
    below the ``percentile``-th percentile of that column (their ``filter_outlier`` option;
    ``percentile=None`` takes the plain argmax); row i of ``T`` is the anchor's predicted
    distribution, rows then normalised to sum to 1.

    Args:
        probs: ``(n, C)`` predicted probabilities of a model trained on the noisy labels
            (Patrini et al. use the training inputs).
        percentile: the outlier filter, in (0, 100], or ``None``.

    Returns:
        ``(C, C)`` row-stochastic ``T``, ``T[i, j] = P(y~ = j | y = i)``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] < 1 or not np.isfinite(probs).all():
        raise ValueError(f"probs must be a finite (n, C) array, got shape {probs.shape}")
    if percentile is not None and not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100] or None, got {percentile}")
    n_classes = probs.shape[1]
    t = np.empty((n_classes, n_classes))
    for i in range(n_classes):
        column = probs[:, i]
        if percentile is not None:
            threshold = np.percentile(column, percentile, method="higher")
            below = np.where(column < threshold, column, -np.inf)
            if np.isfinite(below).any():  # else every value ties at the threshold
                column = below
        t[i] = probs[int(np.argmax(column))]
    return t / t.sum(1, keepdims=True)


@register_head
class MixtureClassifierHead(ClassifierHead, MDNHead):
    """MDN-style baseline: K softmax classifiers mixed by pi(x), trained by their likelihood.

    ``L = -1/N sum_i log sum_k pi_k softmax(y^_k)[y_i]`` with sampled logits
    ``y^_k = mu_k + std_k eps`` while training (the MDN's variances), ``eps = 0`` in eval mode.
    Unlike ChoiceNet there is no designated target: like the regression MDN, ``prediction =
    "mode"`` (default) classifies with the most probable component, ``"mean"`` with the
    pi-weighted mixture of the components' softmaxes. Arguments as
    :class:`~choicebc.heads.mdn.MDNHead`.
    """

    name = "mdn_cls"

    def loss(self, mixture: Mixture, y: Tensor) -> Tensor:
        y = check_labels(y, self.n_classes)
        eps = torch.randn_like(mixture.mu) if self.training else torch.zeros_like(mixture.mu)
        log_p = torch.log_softmax(mixture.mu + mixture.var.sqrt() * eps, dim=-1)
        log_p_y = log_p[torch.arange(len(y)), :, y]  # (N, K)
        return -torch.logsumexp(mixture.log_pi + log_p_y, dim=-1).mean()

    def probabilities(self, mixture: Mixture) -> Tensor:
        probs = torch.softmax(mixture.mu, dim=-1)  # (N, K, C)
        if self.prediction == "mean":
            return (mixture.pi.unsqueeze(-1) * probs).sum(1)
        best = mixture.log_pi.argmax(dim=-1)
        return probs[torch.arange(len(best)), best]
