"""scikit-learn-style regressors: an MLP backbone with any head from :mod:`choicebc.heads`.

``ChoiceNetRegressor`` is the paper's regression model (MLP + Cholesky Block); ``HeadRegressor``
is the same MLP and training loop with a baseline head (``mse``, ``l1``, ``robust``, ``mdn``), so
a comparison changes only the head.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import RegressorMixin

from choicebc.estimator import MLPHeadEstimator, check_array, head_parameters, signature_with
from choicebc.heads import ChoiceNetHead
from choicebc.heads.choicenet import lambda1_schedule


class HeadRegressor(RegressorMixin, MLPHeadEstimator):
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
        self._store_params(locals())

    def _head_spec(self) -> tuple[str, dict[str, Any]]:
        """Registered head name and its hyper-parameters."""
        return self.head, dict(self.head_kwargs or {})

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> HeadRegressor:
        """Train on ``X (n, d)`` and ``y (n,)`` or ``(n, D)``; returns ``self``."""
        X = check_array("X", X, (2,))
        y = check_array("y", y, (1, 2))
        if len(X) != len(y):
            raise ValueError(f"X and y have different lengths: {len(X)} vs {len(y)}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        self.y_ndim_ = y.ndim
        y2 = y.reshape(len(y), -1)
        self.n_outputs_ = y2.shape[1]
        xs = self._standardize_fit_inputs(X)
        if self.standardize_y:
            self.y_mean_, self.y_std_ = y2.mean(0), y2.std(0)
            self.y_std_[self.y_std_ < 1e-12] = 1.0
        else:
            self.y_mean_, self.y_std_ = np.zeros(self.n_outputs_), np.ones(self.n_outputs_)
        ys = torch.as_tensor((y2 - self.y_mean_) / self.y_std_, dtype=torch.float32)

        name, hparams = self._head_spec()
        n, batch = len(xs), min(self.batch_size, len(xs))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model_ = self._new_model(name, hparams, self.n_outputs_)
            self.loss_curve_ = self._train(  # the loss every 100 steps
                self.model_,
                xs,
                ys,
                periods=self.steps,
                batches=lambda: [torch.randint(n, (batch,))],
                steps_per_period=1,
                record_every=100,
                desc=type(self).__name__,
            )
        self.model_.eval()
        return self

    def _adam_options(self) -> dict[str, Any]:
        # fused: one kernel per step instead of ~10 per parameter; these nets are small
        # enough that per-op overhead, not arithmetic, sets the step time
        return {"eps": self.adam_eps, "fused": True}

    # -- inference --------------------------------------------------------------------------
    def _unscale(self, y_std_units: np.ndarray) -> np.ndarray:
        return y_std_units * self.y_std_ + self.y_mean_

    def predict(self, X: Any) -> np.ndarray:
        """Deterministic prediction (the head's ``mode``), shaped like the ``y`` of ``fit``."""
        mixture = self._mixture(X)
        pred = self._unscale(self.model_.head.mode(mixture).double().numpy())
        return pred[:, 0] if self.y_ndim_ == 1 else pred


class ChoiceNetRegressor(HeadRegressor):
    """ChoiceNet for regression (Choi et al., CVPR 2020): an MLP + the Cholesky Block.

    ``predict`` returns the target mixture's mean mu_1 (rho_1 = 1). The constructor takes the
    hyper-parameters of :class:`choicebc.heads.ChoiceNetHead` (documented there) and the
    training settings of :class:`HeadRegressor` but ``head`` and ``head_kwargs``, all by
    keyword. The defaults are the head's (tau^-1 = 0.03 included) but for two:

    * ``isolate_target=True``: mixtures 2..K do not train mu_1 through mu_k = rho_k mu_1.
      With the paper's tied gradient a mixture at rho = -1 whose data sit near -mu_1 pushes
      mu_1 *away* from the data (to bring -mu_1 closer), and can hold mu_1 at the negation
      of the data in part of the input range -- mu_k = -mu_1 then fits them, the likelihood
      is served and the KL of eq. (8) is satisfied, a local optimum training does not leave.
      Isolated, mu_1 is moved only by its own likelihood and the L2 of eq. (7), and nothing
      pulls it away from the data; the other mixtures still learn rho_k from the data, so the
      flipped example keeps rho_2 at -1. Isolation shifts the balance towards the L2 pull,
      which sees the outliers too; tau^-1 = 0.03 keeps the target mixture sharp enough that
      its own likelihood outweighs that pull.
    * ``lambda1_start=None``: the paper's constant ``lambda1``. A ``lambda1_start`` anneals
      eq. (7)'s L2 pull on mu_1 (cosine) from ``lambda1_start`` to ``lambda1`` over the first
      ``lambda1_anneal`` share of the steps; a strong early pull drags mu_1 towards the L2
      fit while the mixtures specialise, which costs the flipped example its rho_2 = -1.

    ``scripts/reproduce_regression.py ablation`` compares these defaults with the tied
    gradient, tau^-1 0.045 and the KL weight; the measurements behind them are in
    docs/design-notes.md.

    Example:
        >>> reg = ChoiceNetRegressor(n_mixtures=5, seed=0, progress=False).fit(X, y)
        >>> reg.predict(X), reg.correlations(X), reg.data_quality(X, y)
    """

    head_defaults = {"isolate_target": True, "lambda1_start": None}
    """The defaults that differ from :class:`~choicebc.heads.ChoiceNetHead`'s (see above)."""

    def __init__(self, **params: Any) -> None:
        self._store_params(params)
        self.head, self.head_kwargs = "choicenet", None

    def _head_spec(self) -> tuple[str, dict[str, Any]]:
        return "choicenet", {p.name: getattr(self, p.name) for p in head_parameters(ChoiceNetHead)}

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
        y = check_array("y", y, (1, 2))
        if len(y) != len(xs):
            raise ValueError(f"X and y have different lengths: {len(xs)} vs {len(y)}")
        y2 = y.reshape(len(y), -1)
        if y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} outputs; the model was fit on {self.n_outputs_}")
        ys = torch.as_tensor((y2 - self.y_mean_) / self.y_std_, dtype=torch.float32)
        self.model_.eval()
        with torch.no_grad():
            return self.model_(xs).posterior(ys)[:, 0].double().numpy()


ChoiceNetRegressor.__init__.__signature__ = signature_with(
    HeadRegressor.__init__,
    head_parameters(ChoiceNetHead, **ChoiceNetRegressor.head_defaults),
    drop=("head", "head_kwargs"),
)
