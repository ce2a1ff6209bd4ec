"""Adversaries: each does what its failure model says; the saboteur loads only reward-minimisers."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest

from choicebc.adversaries import (
    FlippedAdversary,
    NoisyAdversary,
    RandomAdversary,
    SaboteurAdversary,
    SaboteurNotFoundError,
    UnknownAdversaryError,
    load_saboteur,
    make_adversary,
)
from choicebc.experts import ExpertLoadError
from choicebc.experts.policy import ExpertPolicy, MLPActor
from choicebc.experts.train import ExpertTrainConfig, NegatedReward, run_dir, train_expert


def expert_fn(obs: np.ndarray) -> np.ndarray:
    """A fixed policy whose actions sit inside [-0.5, 0.5], so small noise is never clipped."""
    return (0.5 * np.tanh(obs[:, :6] - 0.2)).astype(np.float32)


def observations(n: int = 2000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 17)).astype(np.float32)


def test_flipped_is_minus_the_expert():
    obs = observations()
    adv = make_adversary("flipped", expert_fn)
    assert isinstance(adv, FlippedAdversary) and adv.expert is expert_fn
    np.testing.assert_array_equal(adv(obs), -expert_fn(obs))
    # the collector's path: reuse already-computed expert actions
    np.testing.assert_array_equal(adv.from_expert_actions(obs, expert_fn(obs)), -expert_fn(obs))


def test_random_is_uniform_in_the_box_and_ignores_the_state():
    adv = make_adversary("random", expert_fn, env_id="HalfCheetah-v5", seed=3)
    assert isinstance(adv, RandomAdversary) and adv.act_dim == 6
    a = adv(observations(20_000))
    assert a.shape == (20_000, 6) and a.dtype == np.float32
    assert a.min() >= -1 and a.max() <= 1
    np.testing.assert_allclose(a.mean(axis=0), 0.0, atol=0.03)
    np.testing.assert_allclose(a.std(axis=0), 2 / np.sqrt(12), atol=0.02)  # uniform on [-1, 1]
    # independent of the observation: zero correlation with it
    obs = observations(20_000, seed=1)
    b = adv(obs)
    assert abs(np.corrcoef(obs[:, 0], b[:, 0])[0, 1]) < 0.05
    adv.reseed(3)
    np.testing.assert_array_equal(adv(observations(5)), a[:5])
    adv.reseed(4)
    assert not np.array_equal(adv(observations(5)), a[:5])


def test_random_takes_an_explicit_box():
    adv = make_adversary("random", expert_fn, low=[0.0, -2.0], high=[1.0, -1.0])
    a = adv(observations(1000))
    assert (a[:, 0] >= 0).all() and (a[:, 0] <= 1).all()
    assert (a[:, 1] >= -2).all() and (a[:, 1] <= -1).all()


def test_noisy_adds_gaussian_noise_of_sigma_and_clips():
    obs = observations(20_000)
    adv = make_adversary("noisy", expert_fn, env_id="HalfCheetah-v5", sigma=0.05)
    assert isinstance(adv, NoisyAdversary)
    err = adv(obs) - expert_fn(obs)
    np.testing.assert_allclose(err.mean(axis=0), 0.0, atol=0.003)
    np.testing.assert_allclose(err.std(axis=0), 0.05, rtol=0.05)
    wide = make_adversary("noisy", expert_fn, env_id="HalfCheetah-v5", sigma=3.0)(obs)
    assert wide.min() == -1.0 and wide.max() == 1.0  # clipped to the box, and it bites
    with pytest.raises(ValueError, match="sigma"):
        make_adversary("noisy", expert_fn, env_id="HalfCheetah-v5", sigma=0.0)


def write_policy(folder, objective: str | None, env_id: str = "HalfCheetah-v5", seed: int = 0):
    """An exported SAC-style actor, as the trainer writes it."""
    import torch

    torch.manual_seed(seed)
    actor = MLPActor(17, 6, (8, 8), -np.ones(6), np.ones(6))
    card = {
        "env_id": env_id,
        "algo": "sac",
        "hidden": [8, 8],
        "obs_dim": 17,
        "act_dim": 6,
        "action_low": [-1.0] * 6,
        "action_high": [1.0] * 6,
    }
    if objective is not None:
        card["objective"] = objective
    policy = ExpertPolicy(actor.eval(), card)
    policy.save(folder)
    return policy


def test_saboteur_acts_as_its_reward_minimising_policy(tmp_path):
    policy = write_policy(tmp_path / "sab", "minimize")
    expert = write_policy(tmp_path / "expert", None, seed=1)
    adv = make_adversary("saboteur", expert, path=tmp_path / "sab")
    assert isinstance(adv, SaboteurAdversary) and adv.env_id == "HalfCheetah-v5"
    obs = observations(50)
    np.testing.assert_array_equal(adv(obs), policy(obs))
    assert not np.allclose(adv(obs), expert(obs))


def test_saboteur_refuses_experts_and_missing_files(tmp_path):
    write_policy(tmp_path / "expert", None)
    with pytest.raises(ExpertLoadError, match="reward-maximising"):
        load_saboteur("HalfCheetah-v5", tmp_path / "expert")
    write_policy(tmp_path / "hopper", "minimize", env_id="Hopper-v5")
    with pytest.raises(ExpertLoadError, match="for Hopper-v5"):
        load_saboteur("HalfCheetah-v5", tmp_path / "hopper")
    with pytest.raises(SaboteurNotFoundError, match="--objective minimize"):
        load_saboteur("HalfCheetah-v5", tmp_path / "nothing")
    with pytest.raises(ValueError, match="env_id"):
        make_adversary("saboteur", expert_fn)


def test_factory_errors():
    with pytest.raises(UnknownAdversaryError, match="Did you mean 'noisy'"):
        make_adversary("noisey", expert_fn)
    with pytest.raises(TypeError, match="sigma"):
        make_adversary("flipped", expert_fn, sigma=0.1)
    with pytest.raises(ValueError, match="action box"):
        make_adversary("random", expert_fn)
    with pytest.raises(TypeError, match="callable"):
        make_adversary("flipped", "HalfCheetah-v5")


def test_negated_reward_wrapper():
    env = gym.make("HalfCheetah-v5")
    neg = NegatedReward(gym.make("HalfCheetah-v5"))
    env.reset(seed=0)
    neg.reset(seed=0)
    action = np.full(6, 0.5, np.float32)
    for _ in range(3):
        _, r, *_ = env.step(action)
        _, r_neg, *_ = neg.step(action)
        assert r_neg == -r and r != 0


def test_trainer_objective_minimize_keeps_the_lowest_return(tmp_path):
    """A short SAC run: the saboteur's best/ is the evaluation with the LOWEST task return."""
    cfg = ExpertTrainConfig(
        "choicebc/PointReach-v0",
        total_steps=400,
        seed=0,
        out_dir=str(tmp_path),
        checkpoint_every=400,
        eval_every=100,
        eval_episodes=1,
        hidden=(16, 16),
        objective="minimize",
    )
    assert run_dir(cfg) == tmp_path / "choicebc" / "PointReach-v0-minimize"
    policy = train_expert(cfg, progress=False)
    with (run_dir(cfg) / "progress.csv").open() as f:
        returns = [float(row["eval_mean_return"]) for row in csv.DictReader(f)]
    assert len(returns) == 4 and len(set(returns)) > 1  # distinct: min and max differ
    assert policy.card["objective"] == "minimize"
    assert policy.card["train_eval_mean_return"] == pytest.approx(min(returns), abs=0.05)
    with pytest.raises(ValueError, match="objective"):
        train_expert(ExpertTrainConfig("HalfCheetah-v5", objective="min"), progress=False)


def test_the_shipped_halfcheetah_saboteur_loads_acts_and_is_worse_than_random():
    from choicebc.adversaries import saboteur_dir

    if not (saboteur_dir("HalfCheetah-v5") / "card.json").is_file():
        pytest.skip("no HalfCheetah-v5 saboteur shipped")
    adv = make_adversary("saboteur", expert_fn, env_id="HalfCheetah-v5")
    obs = observations(64)
    actions = adv(obs)
    assert actions.shape == (64, 6) and np.isfinite(actions).all()
    assert np.abs(actions).max() <= 1.0
    card = adv.policy.card
    assert card["objective"] == "minimize" and card["eval_episodes"] == 100
    # its measured return (the card's, from 100 episodes) is far below the random policy's
    assert card["expert_mean_return"] < card["random_mean_return"] - 1000


def test_expert_eval_ship_puts_a_saboteur_under_demos_saboteurs(tmp_path, monkeypatch):
    from choicebc import cards
    from choicebc.cli import main
    from choicebc.experts import cli as experts_cli

    write_policy(tmp_path / "run" / "best", "minimize")
    monkeypatch.setattr(cards, "saboteur_dir", lambda env_id: tmp_path / "sab" / env_id)
    monkeypatch.setattr(experts_cli, "expert_dir", lambda env_id: tmp_path / "experts" / env_id)
    args = ["expert", "eval", "HalfCheetah-v5", "--path", str(tmp_path / "run" / "best")]
    assert main([*args, "--episodes", "2", "--num-envs", "2", "--ship"]) == 0
    shipped = tmp_path / "sab" / "HalfCheetah-v5"
    assert (shipped / "actor.safetensors").is_file()
    assert not (tmp_path / "experts").exists()  # never shipped as an expert
    sab = load_saboteur("HalfCheetah-v5", shipped)
    assert sab.policy.card["eval_episodes"] == 2


def test_the_shipped_halfcheetah_medium_is_between_random_and_the_expert():
    from choicebc.adversaries import MediumAdversary, medium_dir
    from choicebc.experts import load_expert

    expert = load_expert("HalfCheetah-v5")
    adv = make_adversary("medium", expert)
    assert isinstance(adv, MediumAdversary) and adv.kind == "medium"
    card = adv.policy.card
    assert card["kind"] == "medium" and 0.3 <= card["expert_return_share"] <= 0.6
    assert card["mean_return"] == pytest.approx(
        card["expert_return_share"] * expert.card["expert_mean_return"]
    )
    obs = observations(20)
    assert adv(obs).shape == (20, 6) and not np.allclose(adv(obs), expert(obs))
    assert (medium_dir("HalfCheetah-v5") / "actor.safetensors").is_file()


def test_pick_medium_ships_the_snapshot_inside_the_band(tmp_path, capsys):
    """Two snapshots: the shipped medium (in the band) and the expert (above it)."""
    import shutil

    from choicebc.adversaries import medium_dir
    from choicebc.experts import expert_dir, load_expert
    from choicebc.experts.medium import MediumError, pick_medium

    run = tmp_path / "run"
    expert = load_expert("HalfCheetah-v5")
    for step, source, ret in (
        (1000, medium_dir("HalfCheetah-v5"), 2400.0),
        (2000, expert_dir("HalfCheetah-v5"), 5300.0),
    ):
        policy = ExpertPolicy.load(source)
        policy.card["train_eval_mean_return"] = ret
        policy.save(run / "snapshots" / f"step_{step}")
    policy, rows = pick_medium("HalfCheetah-v5", run, episodes=4, num_envs=4, progress=False)
    assert policy.card["source_step"] == 1000 and [r["step"] for r in rows] == [1000]
    assert 0.3 <= policy.card["expert_return_share"] <= 0.6
    shutil.rmtree(run / "snapshots" / "step_1000")
    with pytest.raises(MediumError, match="no snapshot"):
        pick_medium("HalfCheetah-v5", run, episodes=4, num_envs=4, progress=False)
    with pytest.raises(MediumError, match="--snapshots"):
        pick_medium("HalfCheetah-v5", tmp_path / "empty", episodes=4, progress=False)
    assert expert.card["expert_mean_return"] > 5000
