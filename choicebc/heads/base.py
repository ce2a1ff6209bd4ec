"""The one interface every output head implements (the SB3 ``Distribution`` pattern).

A head maps backbone features ``h (N, Q)`` to a :class:`Mixture` of ``K`` diagonal Gaussians over
targets ``y (N, D)``, scores it with a training loss, and reduces it to a deterministic
prediction. Single-output heads (MSE, L1, Tukey) are mixtures with ``K = 1``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

VAR_FLOOR = 1e-6
"""Smallest variance any head reports: keeps log-densities finite when a mixture collapses."""
TARGET_RHO_MIN = 0.95
"""ChoiceNet components at least this correlated with the target count as the target."""


@dataclass
class Mixture:
    """A batch of K-component diagonal Gaussian mixtures.

    Attributes:
        log_pi: ``(N, K)`` log mixture weights (rows log-sum-exp to 0).
        mu: ``(N, K, D)`` component means.
        var: ``(N, K, D)`` component variances (already floored at ``VAR_FLOOR``).
        rho: ``(N, K)`` ChoiceNet correlations with the target mixture (column 0 == 1),
            ``None`` for heads without correlations.
    """

    log_pi: Tensor
    mu: Tensor
    var: Tensor
    rho: Tensor | None = None

    @property
    def pi(self) -> Tensor:
        """``(N, K)`` mixture weights."""
        return self.log_pi.exp()

    def component_log_prob(self, y: Tensor) -> Tensor:
        """``(N, K)`` log N(y; mu_k, diag(var_k)) of targets ``y (N, D)``."""
        y = y.unsqueeze(1)
        return -0.5 * (
            ((y - self.mu) ** 2 / self.var) + self.var.log() + math.log(2 * math.pi)
        ).sum(-1)

    def log_prob(self, y: Tensor) -> Tensor:
        """``(N,)`` mixture log-likelihood of ``y (N, D)``: logsumexp of log-densities."""
        return torch.logsumexp(self.log_pi + self.component_log_prob(y), dim=-1)

    def posterior(self, y: Tensor) -> Tensor:
        """``(N, K)`` responsibility of each component for ``y (N, D)``."""
        joint = self.log_pi + self.component_log_prob(y)
        return torch.softmax(joint, dim=-1)

    def target_posterior(self, y: Tensor, rho_min: float = TARGET_RHO_MIN) -> Tensor:
        """``(N,)`` posterior probability that ``y (N, D)`` came from the target distribution.

        ChoiceNet (``rho`` given): the summed responsibility of the components with
        ``rho_k >= rho_min``. Such a component has ``mu_k ~ mu_1`` and ``var_k ~ 1/tau`` (eq. 6):
        it is the target distribution again, and how the mass splits between identical
        components is arbitrary, so counting component 1 alone would cap a clean step's score
        at 1/(number of copies). Mixtures without correlations (MDN, GMM): the responsibility
        of the component the prediction comes from, the most probable one at that state.
        """
        post = self.posterior(y)
        if self.rho is not None:
            target = self.rho >= rho_min
            target[:, 0] = True  # rho_1 = 1 by construction, whatever rounding says
            return (post * target).sum(-1)
        return post.gather(1, self.log_pi.argmax(-1, keepdim=True)).squeeze(1)


class Head(torch.nn.Module, ABC):
    """Base class of output heads.

    Subclasses set ``name`` (the registry key), keep every constructor argument in
    ``self.hparams`` (so :meth:`config` can rebuild them), and implement :meth:`forward`,
    :meth:`loss` and :meth:`mode`.

    Args:
        in_features: Q, the size of the backbone features.
        out_features: D, the size of the target.
    """

    name: ClassVar[str]

    def __init__(self, in_features: int, out_features: int, **hparams: Any) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.hparams = hparams

    @abstractmethod
    def forward(self, h: Tensor) -> Mixture:
        """Mixture for features ``h (N, Q)``. In training mode heads may sample (ChoiceNet)."""

    @abstractmethod
    def loss(self, mixture: Mixture, y: Tensor) -> Tensor:
        """Scalar training loss of ``mixture`` against targets ``y (N, D)``."""

    def set_progress(self, step: int, total: int) -> None:  # noqa: B027 (optional hook)
        """Called by training loops before step ``step`` of ``total`` (0-based): heads with
        step-dependent hyper-parameters set them here (default: nothing)."""

    def training_loss(self, h: Tensor, y: Tensor) -> Tensor:
        """``loss(self(h), y)`` for features ``h (N, Q)``: what training loops call, so that a
        head may fuse the two (ChoiceNet does)."""
        return self.loss(self(h), y)

    def mode(self, mixture: Mixture) -> Tensor:
        """``(N, D)`` deterministic prediction; default: the first component's mean."""
        return mixture.mu[:, 0]

    def predict(self, h: Tensor) -> Tensor:
        """``(N, D)`` deterministic prediction for features ``h (N, Q)``."""
        return self.mode(self(h))

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description that :func:`make_head` turns back into this head."""
        return {
            "name": self.name,
            "in_features": self.in_features,
            "out_features": self.out_features,
            **self.hparams,
        }


HEADS: dict[str, type[Head]] = {}
"""Registry of head classes by ``name``; filled by :func:`register_head`."""


def register_head(cls: type[Head]) -> type[Head]:
    """Class decorator adding a head to :data:`HEADS` under ``cls.name``."""
    HEADS[cls.name] = cls
    return cls


def make_head(name: str, in_features: int, out_features: int, **hparams: Any) -> Head:
    """Build a registered head by name (``choicenet``, ``mdn``, ``mse``, ``l1``, ``robust``)."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {sorted(HEADS)}")
    return HEADS[name](in_features, out_features, **hparams)


def head_from_config(config: dict[str, Any]) -> Head:
    """Inverse of :meth:`Head.config`."""
    config = dict(config)
    name = config.pop("name", None)
    if name is None:
        raise ValueError("head config has no 'name' field")
    return make_head(name, config.pop("in_features"), config.pop("out_features"), **config)
