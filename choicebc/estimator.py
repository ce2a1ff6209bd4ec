"""What :class:`~choicebc.ChoiceNetRegressor` and :class:`~choicebc.ChoiceNetClassifier` share.

An MLP backbone with a registered head (:class:`MLPWithHead`), inputs standardised inside
``fit``, one Adam training loop (:meth:`MLPHeadEstimator._train`), and hyper-parameters taken
from the head's signature: an estimator's ``__init__`` accepts the head class's constructor
arguments (:func:`head_parameters`, :func:`signature_with`), so the head's defaults are written
once, in the head, and scikit-learn's ``get_params``/``set_params``/``clone`` see them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import Tensor
from tqdm.auto import tqdm

from choicebc.heads import Head, Mixture, make_head

HEAD_SHAPE_ARGS = ("self", "in_features", "out_features")
"""A head constructor's arguments that the estimator sets from the data, not the user."""


def check_array(name: str, a: Any, ndim: tuple[int, ...]) -> np.ndarray:
    """``a`` as a finite float64 array with ``ndim`` in ``ndim`` and at least one row.

    Raises:
        ValueError: with what to fix (non-numeric, wrong dimensions, empty, NaN/inf).
    """
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


def head_parameters(head_class: type[Head], **defaults: Any) -> list[inspect.Parameter]:
    """``head_class``'s hyper-parameters as keyword-only parameters, in its order.

    All constructor arguments but ``in_features`` and ``out_features``; ``defaults`` replaces
    the head's default of the names it gives (an estimator that differs from the head).
    """
    params = list(inspect.signature(head_class).parameters.values())
    unknown = set(defaults) - {p.name for p in params}
    if unknown:
        raise TypeError(f"{head_class.__name__} has no hyper-parameter(s) {sorted(unknown)}")
    return [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=defaults.get(p.name, p.default))
        for p in params
        if p.name not in HEAD_SHAPE_ARGS and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]


def signature_with(
    init: Callable, extra: list[inspect.Parameter], drop: tuple[str, ...] = ()
) -> inspect.Signature:
    """``init``'s signature less ``drop`` and its ``**kwargs``, with ``extra`` added.

    Set as an estimator ``__init__``'s ``__signature__``, it is what ``help()`` shows and what
    scikit-learn reads its parameter names from. With ``drop`` given, every parameter becomes
    keyword-only (the estimator's ``__init__`` takes ``**params``).
    """
    kept = [
        p
        for p in inspect.signature(init).parameters.values()
        if p.name not in drop and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    if drop:
        kept = [kept[0]] + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept[1:]]
    self_and_positional = [p for p in kept if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword_only = [p for p in kept if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return inspect.Signature([*self_and_positional, *extra, *keyword_only])


class MLPWithHead(torch.nn.Module):
    """``x -> ReLU MLP -> head``; the backbone is the paper's fully connected ReLU network.

    Args:
        n_in: input size.
        hidden: widths of the ReLU layers.
        head: registered head name.
        n_out: the head's ``out_features`` (target size, or number of classes).
        hparams: the head's hyper-parameters.
    """

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


class MLPHeadEstimator(BaseEstimator):
    """Base of the scikit-learn-style estimators: an :class:`MLPWithHead` on standardised
    inputs, trained by :meth:`_train`.

    A subclass's ``__init__`` stores its arguments with :meth:`_store_params` (scikit-learn's
    rule: every argument an attribute of the same name, unchanged) and sets
    ``hidden_sizes``, ``batch_size``, ``lr``, ``weight_decay``, ``seed`` and ``progress``.
    """

    hidden_sizes: tuple[int, ...]
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    progress: bool

    def _store_params(self, params: dict[str, Any]) -> None:
        """Bind ``params`` (an ``__init__``'s arguments) to ``type(self).__init__``'s signature
        and store each as an attribute; ``TypeError`` for an unknown name."""
        params = {k: v for k, v in params.items() if k not in ("self", "__class__")}
        bound = inspect.signature(type(self).__init__).bind(self, **params)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    # -- fitting ----------------------------------------------------------------------------
    def _standardize_fit_inputs(self, X: np.ndarray) -> Tensor:
        """Remember ``X``'s per-feature mean and std; ``X`` standardised, as float32."""
        self.n_features_in_ = X.shape[1]
        self.x_mean_, self.x_std_ = X.mean(0), X.std(0)
        self.x_std_[self.x_std_ < 1e-12] = 1.0
        return torch.as_tensor((X - self.x_mean_) / self.x_std_, dtype=torch.float32)

    def _new_model(self, head: str, hparams: dict[str, Any], n_out: int) -> MLPWithHead:
        return MLPWithHead(self.n_features_in_, tuple(self.hidden_sizes), head, n_out, hparams)

    def _adam_options(self) -> dict[str, Any]:
        """Extra keyword arguments of ``torch.optim.Adam`` (default: none)."""
        return {}

    def _train(
        self,
        model: MLPWithHead,
        xs: Tensor,
        ys: Tensor,
        periods: int,
        batches: Callable[[], Iterable[Tensor]],
        steps_per_period: int,
        record_every: int,
        desc: str,
    ) -> list[float]:
        """Adam on minibatches of ``(xs, ys)``; returns the loss curve.

        Training runs ``periods`` periods (an epoch, or one step), each over the
        ``steps_per_period`` index batches ``batches()`` draws for it. The learning rate is
        divided by 10 after half and by 100 after three quarters of the periods. Before every
        step the head gets its progress (:meth:`Head.set_progress`). Every
        ``record_every``-th period's mean loss (weighted by batch size) goes into the curve.

        Raises:
            FloatingPointError: the loss became NaN or inf.
        """
        opt = torch.optim.Adam(
            model.parameters(), lr=self.lr, weight_decay=self.weight_decay, **self._adam_options()
        )
        milestones = [periods // 2, (3 * periods) // 4]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
        total_steps, step, curve = periods * steps_per_period, 0, []
        model.train()
        for period in tqdm(range(periods), disable=not self.progress, desc=desc):
            recording = period % record_every == 0
            total, count = 0.0, 0
            for idx in batches():
                model.head.set_progress(step, total_steps)
                loss = model.head.loss(model(xs[idx]), ys[idx])
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if recording:
                    total, count = total + loss.item() * len(idx), count + len(idx)
            sched.step()
            if recording:
                curve.append(total / count)
        return curve

    # -- inference --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(X, y)")

    def _features(self, X: Any) -> Tensor:
        """``X`` checked and standardised as at ``fit``, as float32."""
        self._check_fitted()
        X = check_array("X", X, (2,))
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features; the model was fit on {self.n_features_in_}"
            )
        return torch.as_tensor((X - self.x_mean_) / self.x_std_, dtype=torch.float32)

    def _mixture(self, X: Any) -> Mixture:
        """The head's mixture for ``X``, in eval mode."""
        xs = self._features(X)
        self.model_.eval()
        with torch.no_grad():
            return self.model_(xs)

    def mixture_weights(self, X: Any) -> np.ndarray:
        """``(n, K)`` mixture weights pi_k(x) (a column of ones for single-output heads)."""
        return self._mixture(X).pi.double().numpy()
