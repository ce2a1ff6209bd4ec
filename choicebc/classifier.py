"""``ChoiceNetClassifier``: a scikit-learn-style MLP classifier robust to noisy labels.

The paper's classification model (Section 3.3, eq. (9)): an MLP backbone and the Cholesky
Block producing K correlated logit mixtures; predictions come from the target mixture
(rho_1 = 1). ``head=`` swaps in a baseline with the same backbone and training loop:
``"ce"`` (cross-entropy), ``"fcorrection"`` (Patrini et al.'s forward correction, transition
matrix estimated from the data) or ``"mdn_cls"`` (an MDN-style mixture of softmaxes).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from sklearn.base import ClassifierMixin
from torch import Tensor

from choicebc.atomic import save_safetensors_atomic, write_json_atomic
from choicebc.estimator import (
    MLPHeadEstimator,
    MLPWithHead,
    check_array,
    head_parameters,
    signature_with,
)
from choicebc.heads import HEADS
from choicebc.heads.classification import (
    ANCHOR_PERCENTILE,
    ChoiceNetClassifierHead,
    ClassifierHead,
    estimate_transition_matrix,
)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
CHOICENET_HEAD = ChoiceNetClassifierHead
"""The head whose hyper-parameters the classifier's constructor takes."""


def as_class_labels(y: Any, n_classes: int | None = None) -> np.ndarray:
    """``y`` as ``(n,) int64`` class indices; ``ValueError`` with a fix for anything else.

    Whole-number floats (``3.0``) and booleans are accepted; fractions, NaN, strings, negative
    labels and labels ``>= n_classes`` are not.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or len(arr) == 0:
        raise ValueError(f"y must be a non-empty 1-D array of class labels, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError("y contains NaN/inf labels; drop those samples first")
        if (arr != np.round(arr)).any():
            bad = arr[arr != np.round(arr)][0]
            raise ValueError(
                f"labels must be whole class indices 0..C-1, got {bad!r}; "
                "use a regressor for continuous targets"
            )
    elif arr.dtype.kind not in "iub":
        raise ValueError(
            f"labels must be integer class indices 0..C-1, got dtype {arr.dtype}; "
            "encode other labels with sklearn.preprocessing.LabelEncoder first"
        )
    labels = arr.astype(np.int64)
    if labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min()}")
    if n_classes is not None and labels.max() >= n_classes:
        raise ValueError(
            f"label {labels.max()} is out of range for {n_classes} classes (0..{n_classes - 1}); "
            "raise n_classes or fix the labels"
        )
    return labels


class ChoiceNetClassifier(ClassifierMixin, MLPHeadEstimator):
    """ChoiceNet for classification with noisy labels (Choi et al., CVPR 2020, eq. (9)).

    Inputs are standardised inside ``fit``. Labels are integer class indices ``0..C-1``.
    Training is Adam on shuffled minibatches for ``epochs`` epochs, the learning rate divided
    by 10 at 50 % and by 100 at 75 % of the epochs.

    Args:
        head: ``"choicenet_cls"`` (default) or a baseline: ``"ce"``, ``"fcorrection"``,
            ``"mdn_cls"``.
        head_kwargs: extra head hyper-parameters; for ChoiceNet they override the above, for
            baselines they are all there is (e.g. ``{"n_mixtures": 5}`` for ``mdn_cls``, a known
            ``{"transition": T}`` for ``fcorrection`` to skip estimating it).
        n_classes: C; default ``max(y) + 1`` at ``fit``.
        hidden_sizes: ReLU backbone widths.
        epochs: passes over the training set.
        batch_size: samples per step.
        lr: initial Adam learning rate.
        weight_decay: Adam L2 weight decay.
        fc_percentile: anchor percentile of the F-correction transition estimate (``None``:
            the plain argmax, no outlier filter).
        seed: seeds initialisation, shuffling and sampling; the global torch RNG is restored.
        progress: show a tqdm progress bar over epochs.
        **choicenet: by keyword, the hyper-parameters of
            :class:`choicebc.heads.classification.ChoiceNetClassifierHead` (``n_mixtures``,
            ``tau_inv``, ``lambda_reg``, ``kl_weight``, ``rho_init``, ...), with its defaults;
            used by ``head="choicenet_cls"`` only.

    Example:
        >>> clf = ChoiceNetClassifier(seed=0, progress=False).fit(X, y_noisy)
        >>> clf.predict(X), clf.correlations(X), clf.data_quality(X, y_noisy)
    """

    def __init__(
        self,
        head: str = "choicenet_cls",
        head_kwargs: dict[str, Any] | None = None,
        n_classes: int | None = None,
        hidden_sizes: tuple[int, ...] = (256, 256),
        epochs: int = 200,
        batch_size: int = 128,
        lr: float = 3e-4,
        weight_decay: float = 1e-5,
        fc_percentile: float | None = ANCHOR_PERCENTILE,
        seed: int = 0,
        progress: bool = True,
        **choicenet: Any,
    ) -> None:
        arguments = dict(locals())
        arguments.update(arguments.pop("choicenet"))
        self._store_params(arguments)

    # -- fitting ----------------------------------------------------------------------------
    def _head_spec(self) -> tuple[str, dict[str, Any]]:
        """Registered head name and its hyper-parameters."""
        if self.head not in HEADS or not issubclass(HEADS[self.head], ClassifierHead):
            names = sorted(n for n, c in HEADS.items() if issubclass(c, ClassifierHead))
            raise ValueError(f"unknown classification head {self.head!r}; choose one of {names}")
        hparams: dict[str, Any] = {}
        if self.head == "choicenet_cls":
            hparams = {p.name: getattr(self, p.name) for p in head_parameters(CHOICENET_HEAD)}
        return self.head, {**hparams, **(self.head_kwargs or {})}

    def fit(self, X: Any, y: Any) -> ChoiceNetClassifier:
        """Train on ``X (n, d)`` and integer labels ``y (n,)``; returns ``self``."""
        X = check_array("X", X, (2,))
        labels = as_class_labels(y, self.n_classes)
        if len(X) != len(labels):
            raise ValueError(f"X and y have different lengths: {len(X)} vs {len(labels)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        n_classes = self.n_classes if self.n_classes is not None else int(labels.max()) + 1
        if n_classes < 2:
            raise ValueError("y has a single class; a classifier needs at least 2")
        name, hparams = self._head_spec()
        self.n_classes_ = n_classes
        self.classes_ = np.arange(n_classes)
        xs = self._standardize_fit_inputs(X)
        ys = torch.as_tensor(labels)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if name == "fcorrection" and "transition" not in hparams:
                # Patrini et al.: train with cross-entropy, estimate T on the training
                # inputs, retrain from scratch with the corrected loss.
                warm = self._new_model("ce", {}, n_classes)
                self._train_epochs(warm, xs, ys, desc="F-correction: CE stage")
                with torch.no_grad():
                    probs = warm.head.probabilities(warm.eval()(xs)).double().numpy()
                hparams["transition"] = estimate_transition_matrix(
                    probs, self.fc_percentile
                ).tolist()
            self.model_ = self._new_model(name, hparams, n_classes)
            self.loss_curve_ = self._train_epochs(self.model_, xs, ys, desc=type(self).__name__)
        self.model_.eval()
        return self

    def _train_epochs(self, model: MLPWithHead, xs: Tensor, ys: Tensor, desc: str) -> list[float]:
        """Minibatch Adam over shuffled epochs; returns the mean loss of every epoch."""
        n = len(xs)
        return self._train(
            model,
            xs,
            ys,
            periods=self.epochs,
            batches=lambda: torch.randperm(n).split(self.batch_size),
            steps_per_period=math.ceil(n / self.batch_size),
            record_every=1,
            desc=desc,
        )

    # -- inference --------------------------------------------------------------------------
    def _labels_for(self, X: Any, y: Any) -> Tensor:
        labels = as_class_labels(y, self.n_classes_)
        if len(labels) != len(X):
            raise ValueError(f"X and y have different lengths: {len(X)} vs {len(labels)}")
        return torch.as_tensor(labels)

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, C)`` class probabilities of the target mixture (rho_1 = 1)."""
        mixture = self._mixture(X)
        return self.model_.head.probabilities(mixture).double().numpy()

    def predict(self, X: Any) -> np.ndarray:
        """``(n,) int64`` predicted class indices."""
        return self.predict_proba(X).argmax(axis=1)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy of :meth:`predict` against labels ``y`` (checked like ``fit``'s)."""
        labels = self._labels_for(X, y).numpy()
        return super().score(X, labels, sample_weight=sample_weight)

    def correlations(self, X: Any) -> np.ndarray:
        """``(n, K)`` rho_k(x); column 0 is the target mixture's 1 (ChoiceNet only)."""
        mixture = self._mixture(X)
        if mixture.rho is None:
            raise ValueError(f"head {self.head!r} has no correlations; use head='choicenet_cls'")
        return mixture.rho.double().numpy()

    def data_quality(self, X: Any, y: Any) -> np.ndarray:
        """``(n,)`` posterior probability that label ``y`` came from the target mixture.

        For ``fcorrection`` it is P(clean label == y | x, y) under the estimated T.
        """
        mixture = self._mixture(X)
        labels = self._labels_for(X, y)
        with torch.no_grad():
            return self.model_.head.target_posterior(mixture, labels).double().numpy()

    # -- persistence ------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``folder`` (atomic per file)."""
        self._check_fitted()
        folder = Path(folder)
        params = self.get_params()
        params["hidden_sizes"] = list(params["hidden_sizes"])
        config = {
            "format_version": FORMAT_VERSION,
            "params": params,
            "n_features_in": self.n_features_in_,
            "n_classes": self.n_classes_,
            "x_mean": self.x_mean_.tolist(),
            "x_std": self.x_std_.tolist(),
            "head": self.model_.head.config(),
        }
        save_safetensors_atomic(self.model_.state_dict(), folder / WEIGHTS_FILE)
        write_json_atomic(folder / CONFIG_FILE, config)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ChoiceNetClassifier:
        """Read a folder written by :meth:`save` (safetensors: no code runs on load)."""
        config_path, weights_path = Path(folder) / CONFIG_FILE, Path(folder) / WEIGHTS_FILE
        missing = [p.name for p in (config_path, weights_path) if not p.is_file()]
        if missing:
            raise ValueError(
                f"{folder} is not a saved classifier: {' and '.join(missing)} missing "
                "(ChoiceNetClassifier.save writes both)"
            )
        try:
            config = json.loads(config_path.read_text())
            params = dict(config["params"])
            params["hidden_sizes"] = tuple(params["hidden_sizes"])
            clf = cls(**params)
            clf.n_features_in_, clf.n_classes_ = config["n_features_in"], config["n_classes"]
            clf.classes_ = np.arange(clf.n_classes_)
            clf.x_mean_, clf.x_std_ = np.asarray(config["x_mean"]), np.asarray(config["x_std"])
            head = dict(config["head"])
            name = head.pop("name")
            hparams = {k: v for k, v in head.items() if k not in ("in_features", "out_features")}
            clf.model_ = clf._new_model(name, hparams, clf.n_classes_)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"cannot rebuild the classifier from {config_path}: {exc}") from exc
        try:
            clf.model_.load_state_dict(load_file(str(weights_path)))
        except Exception as exc:  # safetensors header errors, shape mismatches
            raise ValueError(f"cannot load weights from {weights_path}: {exc}") from exc
        clf.model_.eval()
        return clf


ChoiceNetClassifier.__init__.__signature__ = signature_with(
    ChoiceNetClassifier.__init__, head_parameters(CHOICENET_HEAD)
)
