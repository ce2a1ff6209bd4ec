"""scikit-learn-style regressors: an MLP backbone with any head from :mod:`choicebc.heads`.

``ChoiceNetRegressor`` is the paper's regression model (MLP + Cholesky Block); ``HeadRegressor``
is the same MLP and training loop with a baseline head (``mse``, ``l1``, ``robust``, ``mdn``), so
a comparison changes only the head.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from torch import Tensor
from tqdm.auto import tqdm

from choicebc.heads import Head, Mixture, make_head
from choicebc.heads.choicenet import lambda1_schedule


def _check_array(name: str, a: Any, ndim: tuple[int, ...]) -> np.ndarray:
    """``a`` as a finite float64 array with ``ndim`` in ``ndim`` and at least one row."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric array-like: {exc}") from exc
    if arr.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one sample")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} contains {bad} NaN/inf value(s); drop or impute them first")
    return arr


class HeadRegressor(RegressorMixin, BaseEstimator):
    """MLP regressor whose output layer is a registered head (baselines: L2, L1, Tukey, MDN).

    Inputs (and targets, by default) are standardised inside ``fit``; predictions are returned
    in the original units. Training is Adam with minibatches drawn with replacement, the
    learning rate divided by 10 at 50 % and by 100 at 75 % of ``steps``.

    Args:
        head: registered head name (``mse``, ``l1``, ``robust``, ``mdn``, ``choicenet``).
        head_kwargs: hyper-parameters passed to the head (e.g. ``{"n_mixtures": 5}``).
        hidden_sizes: ReLU backbone widths (default three layers of 64, as Section 4.1).
        steps: optimizer steps.
        batch_size: samples per step.
        lr: initial Adam learning rate.
        weight_decay: Adam L2 weight decay.
        adam_eps: Adam's epsilon.
        standardize_y: also standardise targets (heads' variances are then in units of
            the targets' std).
        seed: seeds initialisation, batches and the head's sampling; the global torch RNG
            is left as it was.
        progress: show a tqdm progress bar.
    """

    def __init__(
        self,
        head: str = "mse",
        head_kwargs: dict[str, Any] | None = None,
        hidden_sizes: tuple[int, ...] = (64, 64, 64),
        steps: int = 3000,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        adam_eps: float = 1e-8,
        standardize_y: bool = True,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.head = head
        self.head_kwargs = head_kwargs
        self.hidden_sizes = hidden_sizes
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.adam_eps = adam_eps
        self.standardize_y = standardize_y
        self.seed = seed
        self.progress = progress

    # -- the parts a subclass changes -------------------------------------------------------
    def _head_spec(self) -> tuple[str, dict[str, Any]]:
        """Registered head name and its hyper-parameters."""
        return self.head, dict(self.head_kwargs or {})

    # -- fitting ----------------------------------------------------------------------------
    def _validate_fit(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X = _check_array("X", X, (2,))
        y = _check_array("y", y, (1, 2))
        if len(X) != len(y):
            raise ValueError(f"X and y have different lengths: {len(X)} vs {len(y)}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        return X, y

    def fit(self, X: Any, y: Any) -> HeadRegressor:
        """Train on ``X (n, d)`` and ``y (n,)`` or ``(n, D)``; returns ``self``."""
        X, y = self._validate_fit(X, y)
        self.y_ndim_ = y.ndim
        y2 = y.reshape(len(y), -1)
        self.n_features_in_ = X.shape[1]
        self.n_outputs_ = y2.shape[1]
        self.x_mean_, self.x_std_ = X.mean(0), X.std(0)
        self.x_std_[self.x_std_ < 1e-12] = 1.0
        if self.standardize_y:
            self.y_mean_, self.y_std_ = y2.mean(0), y2.std(0)
            self.y_std_[self.y_std_ < 1e-12] = 1.0
        else:
            self.y_mean_, self.y_std_ = np.zeros(self.n_outputs_), np.ones(self.n_outputs_)
        xs = torch.as_tensor((X - self.x_mean_) / self.x_std_, dtype=torch.float32)
        ys = torch.as_tensor((y2 - self.y_mean_) / self.y_std_, dtype=torch.float32)

        name, hparams = self._head_spec()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model_ = _MLPWithHead(
                self.n_features_in_, tuple(self.hidden_sizes), name, self.n_outputs_, hparams
            )
            self.loss_curve_ = self._train(self.model_, xs, ys)
        self.model_.eval()
        return self

    def _train(self, model: _MLPWithHead, xs: Tensor, ys: Tensor) -> list[float]:
        """The training loop; returns the loss every 100 steps."""
        # fused: one kernel per step instead of ~10 per parameter; these nets are small
        # enough that per-op overhead, not arithmetic, sets the step time
        opt = torch.optim.Adam(
            model.parameters(),
            lr=self.lr,
            weight_decay=self.weight_decay,
            eps=self.adam_eps,
            fused=True,
        )
        milestones = [self.steps // 2, (3 * self.steps) // 4]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
        n, curve = len(xs), []
        model.train()
        for step in tqdm(range(self.steps), disable=not self.progress, desc=type(self).__name__):
            self._schedule(model, step)
            idx = torch.randint(n, (min(self.batch_size, n),))
            mixture = model(xs[idx])
            loss = model.head.loss(mixture, ys[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 100 == 0:
                curve.append(loss.item())
        return curve

    def _schedule(self, model: _MLPWithHead, step: int) -> None:
        """Set step-dependent head hyper-parameters before training step ``step`` (the head's
        own schedule: ChoiceNet's lambda1 annealing, a no-op for the other heads)."""
        model.head.set_progress(step, self.steps)

    # -- inference --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(X, y)")

    def _features(self, X: Any) -> Tensor:
        self._check_fitted()
        X = _check_array("X", X, (2,))
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features; the model was fit on {self.n_features_in_}"
            )
        return torch.as_tensor((X - self.x_mean_) / self.x_std_, dtype=torch.float32)

    def _mixture(self, X: Any) -> Mixture:
        """The head's mixture (standardised target units) for ``X``, in eval mode."""
        xs = self._features(X)
        self.model_.eval()
        with torch.no_grad():
            return self.model_(xs)

    def _unscale(self, y_std_units: np.ndarray) -> np.ndarray:
        return y_std_units * self.y_std_ + self.y_mean_

    def predict(self, X: Any) -> np.ndarray:
        """Deterministic prediction (the head's ``mode``), shaped like the ``y`` of ``fit``."""
        mixture = self._mixture(X)
        pred = self._unscale(self.model_.head.mode(mixture).double().numpy())
        return pred[:, 0] if self.y_ndim_ == 1 else pred

    def mixture_weights(self, X: Any) -> np.ndarray:
        """``(n, K)`` mixture weights pi_k(x) (a column of ones for single-output heads)."""
        return self._mixture(X).pi.double().numpy()


class ChoiceNetRegressor(HeadRegressor):
    """ChoiceNet for regression (Choi et al., CVPR 2020): an MLP + the Cholesky Block.

    ``predict`` returns the target mixture's mean mu_1 (rho_1 = 1). The head's
    hyper-parameters are documented in :class:`choicebc.heads.ChoiceNetHead`; the training
    settings in :class:`HeadRegressor`. The defaults are the head's (tau^-1 = 0.03 included)
    but for ``isolate_target=True``: mixtures 2..K do not train mu_1 through
    mu_k = rho_k mu_1.

    Why: with the paper's tied gradient a mixture at rho = -1 whose data sit near -mu_1 pushes
    mu_1 *away* from the data (to bring -mu_1 closer), and can hold mu_1 at the negation of the
    data in part of the input range -- mu_k = -mu_1 then fits them, the likelihood is served
    and the KL of eq. (8) is satisfied, a local optimum training does not leave. On the *step*
    target two of three seeds ended there even without outliers (MAE 0.90 where L2 reaches
    0.03: in [-1, 1] mu_1 sat at f's reflection about the targets' mean), and cosexp at 20 %
    lost one seed (0.35). Isolated, mu_1 is moved only by its own likelihood and the L2 of
    eq. (7), and nothing pulls it away from the data; the other mixtures still learn rho_k from
    the data, so the flipped example keeps rho_2 at -1. Isolation shifts the balance towards
    the L2 pull, which sees the outliers too: with tau^-1 = 0.045 (the previous default, chosen
    for the tied gradient) Boston at 40 % rose from 5.85 to 6.98 RMSE, above the paper's 6.80;
    at 0.03 the target mixture is sharper, its own likelihood outweighs the pull, and Boston
    40 % is back under it. ``scripts/reproduce_regression.py ablation`` compares the tied
    gradient, tau^-1 0.045 and the KL weight against this default.

    ``lambda1_start`` (default None: the paper's constant ``lambda1``) anneals eq. (7)'s L2
    pull on mu_1 (cosine) from ``lambda1_start`` to ``lambda1`` over the first
    ``lambda1_anneal`` share of the steps. It was the first cure tried for the step target's
    mirror (with the tied gradient): a strong early pull (``lambda1_start=1.0``) fixed it (MAE
    0.02), but dragged mu_1 towards the L2 fit while the mixtures specialised, and lost the
    flipped example (rho_2 ended at +0.99: a copy of mu_1, not its negation) and Boston at 40 %
    (RMSE 9.7 vs 5.9); ``isolate_target`` fixes the mirror without that cost.

    Example:
        >>> reg = ChoiceNetRegressor(n_mixtures=5, seed=0, progress=False).fit(X, y)
        >>> reg.predict(X), reg.correlations(X), reg.data_quality(X, y)
    """

    def __init__(
        self,
        n_mixtures: int = 5,
        tau_inv: float = 3e-2,
        lambda1: float = 0.1,
        lambda1_start: float | None = None,
        lambda1_anneal: float = 0.5,
        lambda2: float = 1.0,
        kl_weight: float = 0.3,
        sigma_z: float = 1e-2,
        sigma_w_init: float = 1e-2,
        sampling: str = "closed_form",
        kl_stop_grad_rho: bool = False,
        rho_init: float = 0.0,
        isolate_target: bool = True,
        hidden_sizes: tuple[int, ...] = (64, 64, 64),
        steps: int = 3000,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        adam_eps: float = 1e-8,
        standardize_y: bool = True,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.n_mixtures = n_mixtures
        self.tau_inv = tau_inv
        self.lambda1 = lambda1
        self.lambda1_start = lambda1_start
        self.lambda1_anneal = lambda1_anneal
        self.lambda2 = lambda2
        self.kl_weight = kl_weight
        self.sigma_z = sigma_z
        self.sigma_w_init = sigma_w_init
        self.sampling = sampling
        self.kl_stop_grad_rho = kl_stop_grad_rho
        self.rho_init = rho_init
        self.isolate_target = isolate_target
        super().__init__(
            head="choicenet",
            head_kwargs=None,
            hidden_sizes=hidden_sizes,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            adam_eps=adam_eps,
            standardize_y=standardize_y,
            seed=seed,
            progress=progress,
        )

    def _head_spec(self) -> tuple[str, dict[str, Any]]:
        return "choicenet", {
            "n_mixtures": self.n_mixtures,
            "tau_inv": self.tau_inv,
            "lambda1": self.lambda1,
            "lambda2": self.lambda2,
            "kl_weight": self.kl_weight,
            "sigma_z": self.sigma_z,
            "sigma_w_init": self.sigma_w_init,
            "sampling": self.sampling,
            "kl_stop_grad_rho": self.kl_stop_grad_rho,
            "rho_init": self.rho_init,
            "isolate_target": self.isolate_target,
            "lambda1_start": self.lambda1_start,
            "lambda1_anneal": self.lambda1_anneal,
        }

    def lambda1_at(self, step: int) -> float:
        """eq. (7)'s lambda1 at training step ``step``: cosine from ``lambda1_start`` to
        ``lambda1`` over the first ``lambda1_anneal`` share of ``steps``, then ``lambda1``;
        constant ``lambda1`` when ``lambda1_start`` is None."""
        return lambda1_schedule(
            self.lambda1, self.lambda1_start, self.lambda1_anneal, step, self.steps
        )

    def correlations(self, X: Any) -> np.ndarray:
        """``(n, K)`` rho_k(x); column 0 is the target mixture's 1."""
        return self._mixture(X).rho.double().numpy()

    def data_quality(self, X: Any, y: Any) -> np.ndarray:
        """``(n,)`` posterior probability that ``(x, y)`` came from the target mixture."""
        xs = self._features(X)
        y = _check_array("y", y, (1, 2))
        if len(y) != len(xs):
            raise ValueError(f"X and y have different lengths: {len(xs)} vs {len(y)}")
        y2 = y.reshape(len(y), -1)
        if y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} outputs; the model was fit on {self.n_outputs_}")
        ys = torch.as_tensor((y2 - self.y_mean_) / self.y_std_, dtype=torch.float32)
        self.model_.eval()
        with torch.no_grad():
            return self.model_(xs).posterior(ys)[:, 0].double().numpy()


class _MLPWithHead(torch.nn.Module):
    """``x -> ReLU MLP -> head``; the backbone is the paper's fully connected ReLU network."""

    def __init__(
        self, n_in: int, hidden: tuple[int, ...], head: str, n_out: int, hparams: dict
    ) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        width = n_in
        for size in hidden:
            layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
            width = size
        self.backbone = torch.nn.Sequential(*layers)
        self.head: Head = make_head(head, width, n_out, **hparams)

    def forward(self, x: Tensor) -> Mixture:
        return self.head(self.backbone(x))
