"""ChoiceNetRegressor / HeadRegressor: sklearn conventions, input validation, determinism."""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone

import choicebc as cb
from choicebc.regressor import ChoiceNetRegressor, HeadRegressor

FAST = dict(hidden_sizes=(32, 32), steps=150, batch_size=64, progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy(n: int = 200, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, x @ np.arange(1, d + 1) + 0.05 * rng.normal(size=n)


def test_exported_from_the_package():
    assert cb.ChoiceNetRegressor is ChoiceNetRegressor
    assert cb.HeadRegressor is HeadRegressor


@pytest.mark.parametrize("y_2d", [False, True])
def test_fit_predict_shapes_follow_y(y_2d):
    x, y = toy()
    if y_2d:
        y = np.stack([y, -y], axis=1)
    reg = ChoiceNetRegressor(n_mixtures=3, **FAST).fit(x, y)
    assert reg.predict(x[:7]).shape == ((7, 2) if y_2d else (7,))
    rho = reg.correlations(x[:7])
    assert rho.shape == (7, 3) and np.all(rho[:, 0] == 1.0) and np.all(np.abs(rho) <= 1)
    pi = reg.mixture_weights(x[:7])
    assert pi.shape == (7, 3) and np.allclose(pi.sum(1), 1.0)
    q = reg.data_quality(x[:7], y[:7])
    assert q.shape == (7,) and np.all((q >= 0) & (q <= 1))


@pytest.mark.parametrize("head", ["mse", "l1", "robust", "mdn", "choicenet"])
def test_every_head_learns_a_linear_map(head):
    x, y = toy(400)
    reg = HeadRegressor(head=head, **{**FAST, "steps": 400}).fit(x, y)
    assert reg.score(x, y) > 0.9  # R^2 from RegressorMixin; a constant predictor scores 0


def test_same_seed_same_fit_and_global_rng_untouched():
    x, y = toy()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = ChoiceNetRegressor(seed=4, **FAST).fit(x, y)
    assert torch.rand(1) == before  # fit forks the RNG
    b = ChoiceNetRegressor(seed=4, **FAST).fit(x, y)
    c = ChoiceNetRegressor(seed=5, **FAST).fit(x, y)
    assert np.array_equal(a.predict(x), b.predict(x))
    assert np.array_equal(a.correlations(x), b.correlations(x))
    assert not np.array_equal(a.predict(x), c.predict(x))


def test_get_set_params_and_clone():
    reg = ChoiceNetRegressor(kl_weight=0.5, n_mixtures=4, **FAST)
    params = reg.get_params()
    assert params["kl_weight"] == 0.5 and params["n_mixtures"] == 4 and params["steps"] == 150
    reg.set_params(tau_inv=0.2, seed=9)
    assert reg.tau_inv == 0.2 and reg.seed == 9
    twin = clone(reg)
    assert twin.get_params() == reg.get_params() and not hasattr(twin, "model_")
    x, y = toy()
    assert twin.fit(x, y).model_.head.config()["tau_inv"] == 0.2


def test_pickle_round_trip_predicts_identically():
    x, y = toy()
    reg = ChoiceNetRegressor(**FAST).fit(x, y)
    again = pickle.loads(pickle.dumps(reg))
    assert np.array_equal(reg.predict(x), again.predict(x))


BAD_FIT = {
    "nan in X": (lambda x, y: (np.where(np.eye(*x.shape) > 0, np.nan, x), y), "NaN"),
    "inf in y": (lambda x, y: (x, np.r_[np.inf, y[1:]]), "NaN/inf"),
    "1-D X": (lambda x, y: (x[:, 0], y), "2-D"),
    "3-D y": (lambda x, y: (x, y[:, None, None]), "1-D or 2-D"),
    "empty": (lambda x, y: (x[:0], y[:0]), "empty"),
    "mismatched lengths": (lambda x, y: (x, y[:-1]), "different lengths"),
    "strings": (lambda x, y: (x.astype(str).astype(object) + "a", y), "numeric"),
}


@pytest.mark.parametrize("case", list(BAD_FIT))
def test_bad_fit_input_raises_value_error(case):
    make_bad, message = BAD_FIT[case]
    x, y = make_bad(*toy(20))
    with pytest.raises(ValueError, match=message):
        ChoiceNetRegressor(**FAST).fit(x, y)


def test_bad_predict_input_raises_value_error():
    x, y = toy()
    with pytest.raises(ValueError, match="not fitted"):
        ChoiceNetRegressor(**FAST).predict(x)
    reg = ChoiceNetRegressor(**FAST).fit(x, y)
    with pytest.raises(ValueError, match="features"):
        reg.predict(x[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        reg.predict(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="empty"):
        reg.predict(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="different lengths"):
        reg.data_quality(x, y[:-1])
    with pytest.raises(ValueError, match="outputs"):
        reg.data_quality(x, np.stack([y, y], 1))


def test_choicenet_ignores_outliers_that_pull_the_l2_fit():
    """40 % of targets replaced by +3: the L2 fit shifts by ~1.2, ChoiceNet's mu_1 does not."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(600, 1))
    f = np.sin(2 * x[:, 0])
    y = f + 0.05 * rng.normal(size=600)
    outlier = rng.random(600) < 0.4
    y[outlier] = 3.0 + 0.3 * rng.normal(size=outlier.sum())
    common = dict(hidden_sizes=(32, 32), steps=800, progress=False)
    cn = ChoiceNetRegressor(**common).fit(x, y)
    l2 = HeadRegressor(head="mse", **common).fit(x, y)
    cn_err = np.abs(cn.predict(x) - f).mean()
    l2_err = np.abs(l2.predict(x) - f).mean()
    assert l2_err > 0.8
    assert cn_err < 0.15
    quality = cn.data_quality(x, y)
    assert quality[~outlier].mean() > 0.8 > 0.2 > quality[outlier].mean()


def test_lambda1_anneals_from_start_over_the_given_share():
    reg = ChoiceNetRegressor(lambda1=0.1, lambda1_start=1.0, steps=100)
    assert reg.lambda1_at(0) == pytest.approx(1.0)
    assert reg.lambda1_at(25) == pytest.approx(0.55)  # cosine midpoint
    assert reg.lambda1_at(10) > reg.lambda1_at(20) > reg.lambda1_at(40) > 0.1
    assert reg.lambda1_at(50) == reg.lambda1_at(99) == pytest.approx(0.1)
    short = ChoiceNetRegressor(lambda1=0.1, lambda1_start=1.0, lambda1_anneal=0.1, steps=100)
    assert short.lambda1_at(5) == pytest.approx(0.55) and short.lambda1_at(10) == 0.1
    constant = ChoiceNetRegressor(lambda1=0.1, steps=100)  # the default: the paper's constant
    assert constant.lambda1_start is None
    assert {constant.lambda1_at(t) for t in (0, 25, 99)} == {0.1}


def test_training_uses_the_lambda1_schedule(monkeypatch):
    """The head's lambda1 at each loss call follows ``lambda1_at``; it ends at ``lambda1``."""
    seen: list[float] = []
    reg = ChoiceNetRegressor(n_mixtures=2, lambda1_start=2.0, **{**FAST, "steps": 20})
    loss = cb.heads.ChoiceNetHead.loss

    def recording_loss(head, mixture, y):
        seen.append(head.lambda1)
        return loss(head, mixture, y)

    monkeypatch.setattr(cb.heads.ChoiceNetHead, "loss", recording_loss)
    x, y = toy(50)
    reg.fit(x, y)
    assert seen == pytest.approx([reg.lambda1_at(t) for t in range(20)])
    assert seen[0] == pytest.approx(2.0) and reg.model_.head.lambda1 == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lambda1_start"):
        ChoiceNetRegressor(lambda1_start=-1.0, **FAST).fit(x, y)
    with pytest.raises(ValueError, match="lambda1_anneal"):
        ChoiceNetRegressor(lambda1_start=1.0, lambda1_anneal=1.5, **FAST).fit(x, y)


def test_choicenet_hyper_parameters_come_from_the_head_signature():
    """Every ChoiceNetHead argument is an estimator parameter with the head's default, but the
    two the regressor changes; unknown names fail like any keyword argument."""
    head_defaults = {
        name: p.default
        for name, p in inspect.signature(cb.heads.ChoiceNetHead).parameters.items()
        if name not in ("in_features", "out_features")
    }
    params = ChoiceNetRegressor().get_params()
    assert set(head_defaults) <= set(params)
    changed = {k for k, v in head_defaults.items() if params[k] != v}
    assert changed == {"isolate_target", "lambda1_start"}
    assert params["isolate_target"] is True and params["lambda1_start"] is None
    assert set(params) - set(head_defaults) == set(HeadRegressor().get_params()) - {
        "head",
        "head_kwargs",
    }
    with pytest.raises(TypeError, match="n_mixture"):
        ChoiceNetRegressor(n_mixture=3)
    x, y = toy()
    reg = ChoiceNetRegressor(sigma_w_init=0.05, **FAST).fit(x, y)
    assert reg.model_.head.config()["sigma_w_init"] == 0.05
