"""Classification heads (eq. (9) ChoiceNet, CE, F-correction, MDN-style) and ChoiceNetClassifier."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from choicebc import ChoiceNetClassifier
from choicebc.heads import Mixture, head_from_config, make_head
from choicebc.heads.classification import (
    ChoiceNetClassifierHead,
    ForwardCorrectionHead,
    estimate_transition_matrix,
)

CLS_HEADS = ["choicenet_cls", "ce", "fcorrection", "mdn_cls"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: intra-op threads only add contention (40x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blobs(n: int = 600, noise: float = 0.0, seed: int = 0):
    """Three well separated 2-D Gaussian classes; ``noise`` of the labels flipped symmetrically.

    Returns ``x (n, 2)``, noisy labels, true labels.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centres = np.array([[0.0, 4.0], [-4.0, -2.0], [4.0, -2.0]])
    x = centres[y] + rng.normal(size=(n, 2))
    flip = rng.random(n) < noise
    noisy = np.where(flip, (y + rng.integers(1, 3, size=n)) % 3, y)
    return x, noisy, y


def small_clf(**kw) -> ChoiceNetClassifier:
    params = {"hidden_sizes": (32,), "epochs": 40, "batch_size": 64, "lr": 3e-3, "progress": False}
    return ChoiceNetClassifier(**{**params, **kw})


# -- eq. (9) -------------------------------------------------------------------------------------
def test_eq9_loss_equals_hand_computation_eval_mode():
    """eps = 0: two mixtures, two classes, numbers chosen so softmax/logsumexp are exact."""
    head = ChoiceNetClassifierHead(4, 2, n_mixtures=2, lambda_reg=0.1, kl_weight=0.5).eval()
    mixture = Mixture(
        log_pi=torch.tensor([[math.log(0.75), math.log(0.25)]]),
        mu=torch.tensor([[[math.log(3.0), 0.0], [0.0, 0.0]]]),  # softmax (3/4, 1/4), (1/2, 1/2)
        var=torch.full((1, 2, 2), 0.3),
        rho=torch.tensor([[1.0, 0.0]]),
    )
    fit = 0.75 * (-0.75 + 0.1 * math.log(4.0)) + 0.25 * (-0.5 + 0.1 * math.log(2.0))
    a, b = math.e / (math.e + 1), 1 / (math.e + 1)  # softmax(rho)
    kl = a * math.log(a / 0.75) + b * math.log(b / 0.25)
    loss = head.loss(mixture, torch.tensor([0]))
    assert loss.item() == pytest.approx(fit + 0.5 * kl, rel=1e-6)


def test_eq9_loss_equals_hand_computation_with_sampled_logits():
    """Training mode: y^_k = mu_k + sqrt(Sigma_k) eps with the same eps, summed by hand."""
    head = ChoiceNetClassifierHead(4, 3, n_mixtures=2, lambda_reg=0.05, kl_weight=0.0).train()
    mu = torch.tensor([[[1.0, -0.5, 0.2], [-1.0, 0.5, -0.2]], [[0.3, 0.0, -2.0], [0.1, 0.0, 0.7]]])
    var = torch.tensor([[[0.5, 1.0, 2.0], [0.1, 0.2, 0.3]], [[1.0, 1.0, 1.0], [4.0, 0.5, 0.25]]])
    pi = torch.tensor([[0.6, 0.4], [0.1, 0.9]])
    mixture = Mixture(log_pi=pi.log(), mu=mu, var=var, rho=torch.tensor([[1.0, -0.9], [1, 0.3]]))
    y = [2, 0]
    torch.manual_seed(7)
    eps = torch.randn(2, 2, 3).tolist()
    torch.manual_seed(7)
    loss = head.loss(mixture, torch.tensor(y)).item()
    total = 0.0
    for i in range(2):
        for k in range(2):
            logits = [
                mu[i, k, d].item() + math.sqrt(var[i, k, d].item()) * eps[i][k][d] for d in range(3)
            ]
            z = sum(math.exp(v) for v in logits)
            agreement = math.exp(logits[y[i]]) / z
            total += pi[i, k].item() * (-agreement + 0.05 * math.log(z))
    assert loss == pytest.approx(total / 2, rel=1e-5)


def test_forward_correction_loss_by_hand():
    head = ForwardCorrectionHead(3, 2, transition=[[0.8, 0.2], [0.3, 0.7]])
    logits = torch.tensor([[[math.log(3.0), 0.0]]])  # p = (3/4, 1/4)
    mixture = Mixture(log_pi=torch.zeros(1, 1), mu=logits, var=torch.ones(1, 1, 2))
    noisy_p1 = 0.75 * 0.2 + 0.25 * 0.7
    assert head.loss(mixture, torch.tensor([1])).item() == pytest.approx(-math.log(noisy_p1))
    posterior = head.target_posterior(mixture, torch.tensor([1])).item()
    assert posterior == pytest.approx(0.25 * 0.7 / noisy_p1)


def test_transition_estimate_recovers_anchor_rows_and_skips_outliers():
    t = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])
    rows = []
    for i in range(3):
        rows += [0.5 * t[i] + 0.5 / 3] * 61  # typical examples, less confident than the anchor
        rows.append(t[i])  # the anchor
        for j in range(7):  # overconfident outliers: the top 7 of 207 = the top 3 %
            outlier = np.full(3, (0.1 - 0.01 * j) / 2)
            outlier[i] = 0.9 + 0.01 * j
            rows.append(outlier)
    probs = np.array(rows)
    np.testing.assert_allclose(estimate_transition_matrix(probs), t, atol=1e-12)
    no_filter = estimate_transition_matrix(probs, percentile=None)
    assert no_filter[0, 0] == pytest.approx(0.96)  # the argmax picks the strongest outlier


# -- every head: gradients, save/load, labels ----------------------------------------------------
@pytest.mark.parametrize("name", CLS_HEADS)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    backbone = torch.nn.Linear(5, 8)
    head = make_head(name, 8, 4)
    if name == "fcorrection":
        head = make_head(name, 8, 4, transition=(np.full((4, 4), 0.1) + 0.6 * np.eye(4)).tolist())
    head.train()
    x, y = torch.randn(64, 5), torch.randint(0, 4, (64,))
    head.loss(head(torch.relu(backbone(x))), y).backward()
    for pname, p in [*backbone.named_parameters(), *head.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    if name == "choicenet_cls":  # the fused block: every gate's rows must learn
        grad = head.block.bias.grad
        for gate in ("mu", "rho", "pi", "sigma0"):
            view = head.gate_bias(gate)
            start = view.storage_offset() - head.block.bias.storage_offset()
            assert grad[start : start + len(view)].abs().sum() > 0, gate


@pytest.mark.parametrize("name", CLS_HEADS)
def test_head_state_dict_round_trip_is_exact(name):
    torch.manual_seed(1)
    kwargs = {"transition": [[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.9]]}
    head = make_head(name, 6, 3, **(kwargs if name == "fcorrection" else {})).eval()
    clone_ = head_from_config(head.config())
    clone_.load_state_dict(head.state_dict())
    clone_.eval()
    h = torch.randn(20, 6)
    a, b = head(h), clone_(h)
    assert torch.equal(a.mu, b.mu) and torch.equal(a.log_pi, b.log_pi)
    assert torch.equal(head.probabilities(a), clone_.probabilities(b))
    assert head.mode(a).dtype == torch.int64 and head.mode(a).shape == (20,)


@pytest.mark.parametrize("name", CLS_HEADS)
def test_head_rejects_bad_labels(name):
    head = make_head(name, 4, 3).train()
    mixture = head(torch.randn(5, 4))
    with pytest.raises(ValueError, match="integer"):
        head.loss(mixture, torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        head.loss(mixture, torch.tensor([0, 1, 3, 1, 0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        head.loss(mixture, torch.tensor([0, -1, 2, 1, 0]))


# -- the estimator -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CLS_HEADS)
def test_estimator_save_load_round_trip_is_exact(name, tmp_path):
    x, y, _ = blobs(150, noise=0.2)
    clf = small_clf(head=name, epochs=3).fit(x, y)
    loaded = ChoiceNetClassifier.load(clf.save(tmp_path / name))
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(x), clf.predict_proba(x))
    if name in ("choicenet_cls", "fcorrection"):
        np.testing.assert_array_equal(loaded.data_quality(x, y), clf.data_quality(x, y))
    if name == "fcorrection":  # the estimated transition matrix travels with the model
        assert torch.equal(loaded.model_.head.transition, clf.model_.head.transition)
        assert not torch.equal(clf.model_.head.transition, torch.eye(3))


def test_load_reports_missing_or_corrupt_folders(tmp_path):
    with pytest.raises(ValueError, match="not a saved classifier"):
        ChoiceNetClassifier.load(tmp_path)
    x, y, _ = blobs(60)
    folder = small_clf(epochs=1).fit(x, y).save(tmp_path / "clf")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot rebuild"):
        ChoiceNetClassifier.load(folder)


def test_choicenet_finds_flipped_labels_and_ignores_them():
    x, noisy, true = blobs(300, noise=0.3, seed=1)
    clf = small_clf(seed=0, epochs=30).fit(x, noisy)
    x_test, _, y_test = blobs(300, seed=2)
    assert clf.score(x_test, y_test) > 0.97
    assert roc_auc_score(noisy == true, clf.data_quality(x, noisy)) > 0.95
    rho = clf.correlations(x)
    assert rho.shape == (300, 2) and np.all(rho[:, 0] == 1.0)
    assert rho[:, 1].mean() < -0.5  # the noise mixture is anti-correlated, not a target copy
    np.testing.assert_allclose(clf.mixture_weights(x).sum(1), 1.0, rtol=1e-5)


def test_predictions_are_consistent_and_seeded():
    x, y, _ = blobs(200, noise=0.1)
    state = torch.random.get_rng_state()
    a = small_clf(seed=3, epochs=5).fit(x, y)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    b = small_clf(seed=3, epochs=5).fit(x, y)
    c = small_clf(seed=4, epochs=5).fit(x, y)
    proba = a.predict_proba(x)
    np.testing.assert_array_equal(proba, b.predict_proba(x))
    assert not np.array_equal(proba, c.predict_proba(x))
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a.predict(x), proba.argmax(1))
    assert a.score(x, y) == pytest.approx(np.mean(a.predict(x) == y))
    assert clone(a).get_params() == a.get_params()
    assert a.set_params(kl_weight=0.2).kl_weight == 0.2


def test_estimator_rejects_bad_input_with_clear_errors():
    x, y, _ = blobs(60)
    with pytest.raises(ValueError, match="out of range"):
        small_clf(n_classes=2).fit(x, y)
    with pytest.raises(ValueError, match=">= 0"):
        small_clf().fit(x, np.where(y == 0, -1, y))
    with pytest.raises(ValueError, match="whole class indices"):
        small_clf().fit(x, y + 0.5)
    with pytest.raises(ValueError, match="LabelEncoder"):
        small_clf().fit(x, np.array(["a", "b", "c"] * 20))
    with pytest.raises(ValueError, match="NaN"):
        small_clf().fit(x, np.where(y == 0, np.nan, y))
    bad_x = x.copy()
    bad_x[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        small_clf().fit(bad_x, y)
    with pytest.raises(ValueError, match="different lengths"):
        small_clf().fit(x, y[:-1])
    with pytest.raises(ValueError, match="unknown classification head"):
        small_clf(head="mse").fit(x, y)
    clf = small_clf(epochs=1).fit(x, y.astype(float))  # whole-number floats are fine
    with pytest.raises(ValueError, match="out of range"):
        clf.data_quality(x, np.full(60, 3))
    with pytest.raises(ValueError, match="features"):
        clf.predict(x[:, :1])
    with pytest.raises(ValueError, match="no correlations"):
        small_clf(head="ce", epochs=1).fit(x, y).correlations(x)
    with pytest.raises(ValueError, match="no noise model"):
        small_clf(head="ce", epochs=1).fit(x, y).data_quality(x, y)
    with pytest.raises(ValueError, match="not fitted"):
        small_clf().predict(x)


def test_choicenet_hyper_parameters_come_from_the_head_signature():
    head_defaults = {
        name: p.default
        for name, p in inspect.signature(ChoiceNetClassifierHead).parameters.items()
        if name not in ("in_features", "out_features")
    }
    params = ChoiceNetClassifier().get_params()
    assert {k: params[k] for k in head_defaults} == head_defaults
    with pytest.raises(TypeError, match="lambda_regg"):
        ChoiceNetClassifier(lambda_regg=1e-3)
    x, y, _ = blobs(60)
    clf = small_clf(epochs=1).set_params(lambda_reg=2e-4, lambda1_steps=3).fit(x, y)
    config = clf.model_.head.config()
    assert config["lambda_reg"] == 2e-4 and config["lambda1_steps"] == 3
