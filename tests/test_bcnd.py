"""BCND: the reweighting formula, a fixed-policy round, training, save/load, evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from choicebc.envs import POINT_REACH_ID
from sklearn.metrics import roc_auc_score

import choicebc as cb
from choicebc.bcnd import BCNDPolicy, bcnd_weights, load_policy_folder, train_bcnd
from choicebc.policy import BCPolicy, PolicyLoadError
from choicebc.train import sample_batch, weights_cdf

TINY = cb.TrainConfig(hidden=(32, 32), batch_size=128, log_every=10**6)


@pytest.fixture(scope="module")
def demos(point_reach_flipped):
    return point_reach_flipped


@pytest.fixture(scope="module")
def bcnd(demos):
    torch.set_num_threads(1)
    return train_bcnd(demos, ensemble=2, rounds=2, steps=300, seed=0, progress=False, config=TINY)


def constant_member(mean: float, std: float, obs_dim: int = 1) -> BCPolicy:
    """A 1-D-action Gaussian member whose pi(a|s) = N(a; mean, std^2) for every state."""
    policy = BCPolicy(obs_dim, 1, head="gmm", hidden=(), head_kwargs={"n_modes": 1})
    head = policy.head
    with torch.no_grad():
        for layer in (head.logits, head.means, head.stds):
            layer.weight.zero_()
            layer.bias.zero_()
        head.means.bias.fill_(math.atanh(mean))  # mean_limit * tanh(bias) = mean
        # softplus(b) + min_std = std  =>  b = log(exp(std - min_std) - 1)
        head.stds.bias.fill_(math.log(math.expm1(std - head.min_std)))
    return policy.eval()


def normal_pdf(a: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.exp(-0.5 * ((a - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


# ----------------------------------------------------------------------------- the formula
def test_weights_hand_computed():
    w = bcnd_weights(np.log([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(w, [0.1, 0.2, 0.3, 0.4], rtol=1e-12)


def test_weights_are_normalised_and_stable_for_extreme_densities():
    # densities of e^-1000 and 3 e^-1000 underflow as floats, their ratio must survive
    w = bcnd_weights(np.array([-1000.0, -1000.0 + math.log(3.0)]))
    np.testing.assert_allclose(w, [0.25, 0.75], rtol=1e-12)
    w = bcnd_weights(np.random.default_rng(0).normal(0, 50, size=1000))
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        bcnd_weights(np.array([0.0, np.nan]))


def test_fixed_policy_round_gives_the_expected_weights():
    # two members with known, state-independent Gaussians: pi_old = their mean density
    members = [constant_member(0.5, 0.2), constant_member(-0.1, 0.4)]
    policy = BCNDPolicy(members)
    obs = np.zeros((5, 1), np.float32)
    actions = np.array([[0.5], [0.4], [0.0], [-0.5], [0.9]], np.float32)
    a = actions[:, 0].astype(np.float64)
    pi_old = 0.5 * (normal_pdf(a, 0.5, 0.2) + normal_pdf(a, -0.1, 0.4))
    np.testing.assert_allclose(
        policy.log_likelihood(observations=obs, actions=actions), np.log(pi_old), rtol=1e-5
    )
    np.testing.assert_allclose(
        policy.sample_weights(observations=obs, actions=actions), pi_old / pi_old.sum(), rtol=1e-5
    )


def test_data_quality_is_the_relative_likelihood():
    # one Gaussian member: q(a) = pi(a) / pi(mean) = exp(-d^2 / 2), d in standard deviations
    policy = BCNDPolicy([constant_member(0.2, 0.1)])
    actions = np.array([[0.2], [0.3], [0.0], [-0.2]], np.float32)
    q = policy.data_quality(observations=np.zeros((4, 1), np.float32), actions=actions)
    d = (actions[:, 0] - 0.2) / 0.1
    np.testing.assert_allclose(q, np.exp(-0.5 * d**2), rtol=1e-4, atol=1e-7)
    assert q[0] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- weighted sampling
def test_weighted_batches_follow_the_weights():
    obs = torch.arange(4, dtype=torch.float32)[:, None]
    gen = torch.Generator().manual_seed(0)
    picked, _ = sample_batch(obs, obs, 20_000, gen, weights_cdf(np.array([1.0, 0, 3.0, 0])))
    counts = np.bincount(picked[:, 0].long().numpy(), minlength=4)
    assert counts[1] == counts[3] == 0
    assert counts[2] / counts.sum() == pytest.approx(0.75, abs=0.015)
    with pytest.raises(ValueError, match="all zero"):
        weights_cdf(np.zeros(3))
    with pytest.raises(ValueError, match=">= 0"):
        weights_cdf(np.array([1.0, -1.0]))


def test_train_bc_checks_sample_weights(demos):
    with pytest.raises(ValueError, match="one entry per transition"):
        cb.train_bc(demos, head="mse", steps=1, progress=False, sample_weights=np.ones(3))


def test_round_diagnostics_effective_sample_share_by_hand():
    from choicebc.bcnd import _round_diagnostics

    # weights 0.5, 0.5, 0, 0: 1 / (0.25 + 0.25) = 2 effective samples of 4
    row = _round_diagnostics(np.array([0.5, 0.5, 0.0, 0.0]), np.array([0, 0, 1, 1], bool), 1)
    assert row["effective_sample_share"] == pytest.approx(0.5)
    assert row["max_weight_times_m"] == pytest.approx(2.0)
    assert row["corrupt_weight_share"] == 0.0


# ----------------------------------------------------------------------------- training
def test_rounds_move_weight_off_the_corrupt_steps(bcnd, demos):
    history = bcnd.history
    assert [h["round"] for h in history] == [0, 1, 2]
    assert history[0]["corrupt_weight_share"] == pytest.approx(demos.is_corrupt.mean())
    assert history[1]["corrupt_weight_share"] < 0.5 * history[0]["corrupt_weight_share"]
    assert history[2]["corrupt_weight_share"] < history[1]["corrupt_weight_share"]
    assert history[0]["effective_sample_share"] == pytest.approx(1.0)  # uniform weights
    assert all(0 < h["effective_sample_share"] < 1 for h in history[1:])
    q = bcnd.data_quality(demos)
    assert q.shape == (len(demos),) and q.min() >= 0 and q.max() <= 1
    assert roc_auc_score(~demos.is_corrupt, q) >= 0.95


def test_acts_with_the_ensemble_mean(bcnd, demos):
    obs = demos.observations[:7]
    mean = np.mean([m.act(obs) for m in bcnd.members], axis=0)
    np.testing.assert_allclose(bcnd.act(obs), mean, rtol=1e-6)
    action, state = bcnd.predict(obs[0])
    assert action.shape == (2,) and state is None


def test_save_load_round_trip_and_checks(bcnd, demos, tmp_path):
    bcnd.save(tmp_path / "bcnd")
    loaded = load_policy_folder(tmp_path / "bcnd")
    assert isinstance(loaded, BCNDPolicy) and loaded.env_id == POINT_REACH_ID
    np.testing.assert_array_equal(loaded.act(demos.observations), bcnd.act(demos.observations))
    assert loaded.history == bcnd.history
    with pytest.raises(PolicyLoadError, match="obs_dim"):
        BCNDPolicy.load(tmp_path / "bcnd", obs_dim=17)
    (tmp_path / "bcnd" / "member_1" / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(PolicyLoadError, match="cannot load weights"):
        BCNDPolicy.load(tmp_path / "bcnd")
    with pytest.raises(PolicyLoadError, match="missing"):
        BCNDPolicy.load(tmp_path / "nothing")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"members": ["../elsewhere"]}, "members must list"),
        ({"members": []}, "members must list"),
        ({"members": "member_0"}, "members must list"),
        ({"obs_dim": -1}, r"obs_dim must be an integer in \[1, 1,000,000\], got -1"),
        ({"act_dim": "1"}, "act_dim must be an integer"),
        ({"history": 5}, "history must be a list"),
    ],
)
def test_load_checks_the_ensemble_config(tmp_path, changes, message):
    folder = BCNDPolicy([constant_member(0.0, 1.0), constant_member(0.5, 1.0)]).save(tmp_path / "b")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    with pytest.raises(PolicyLoadError, match=message):
        load_policy_folder(folder)


def test_a_binary_ensemble_config_is_a_load_error(tmp_path):
    folder = BCNDPolicy([constant_member(0.0, 1.0)]).save(tmp_path / "b")
    (folder / "config.json").write_bytes(bytes(range(256)))
    assert not BCNDPolicy.is_bcnd_folder(folder)
    with pytest.raises(PolicyLoadError, match="not a text file"):
        load_policy_folder(folder)
    with pytest.raises(PolicyLoadError, match="not a text file"):
        BCNDPolicy.load(folder)


def test_evaluates_in_the_batched_simulator(bcnd):
    result = cb.evaluate(bcnd, POINT_REACH_ID, episodes=4, seed=0)
    assert result.returns.shape == (4,) and np.isfinite(result.returns).all()


def test_bad_arguments(demos):
    with pytest.raises(ValueError, match="ensemble"):
        train_bcnd(demos, ensemble=0, progress=False)
    with pytest.raises(ValueError, match="learns no"):
        train_bcnd(demos, head="mse", progress=False)


# ----------------------------------------------------------------------------- the gmm head
def test_gmm_head_follows_robomimic_bc_gmm():
    from choicebc.heads import head_from_config, make_head

    head = make_head("gmm", 8, 3)
    assert (head.k, head.min_std, head.mean_limit) == (5, 0.01, 1.0)
    with torch.no_grad():
        head.means.bias.fill_(50.0)  # huge pre-activations: tanh keeps means in the box
        head.stds.bias.fill_(-50.0)  # softplus -> 0: the std floor holds
        mix = head(torch.randn(16, 8))
    assert mix.mu.shape == (16, 5, 3) and float(mix.mu.abs().max()) <= 1.0
    np.testing.assert_allclose(mix.var.sqrt().numpy(), 0.01, rtol=1e-4)
    # low-noise evaluation, deterministic: the mean of the most probable mode
    best = mix.log_pi.argmax(-1)
    np.testing.assert_array_equal(head.mode(mix).numpy(), mix.mu[torch.arange(16), best].numpy())
    clone = head_from_config(head.config())
    assert clone.config() == head.config()
    unbounded = make_head("gmm", 8, 3, mean_limit=None)
    with torch.no_grad():
        unbounded.means.bias.fill_(50.0)
        assert float(unbounded(torch.zeros(2, 8)).mu.min()) == pytest.approx(50.0)
