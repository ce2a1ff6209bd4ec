"""BCPolicy and train_bc: target-mixture actions, SB3 contract, save/load, resume, NaN guard."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import choicebc.train as train_mod
from choicebc.policy import BCPolicy, PolicyLoadError
from choicebc.train import TrainConfig, TrainingDivergedError, train_bc

HEADS = ["choicenet", "mdn", "mse", "l1", "robust"]


@dataclass
class ToyDemos:
    """Flat arrays shaped like a DemoSet: 70 % expert a = tanh(W s), 30 % flipped."""

    observations: np.ndarray
    actions: np.ndarray
    is_corrupt: np.ndarray
    episode_ids: np.ndarray
    env_id: str = "Toy-v0"
    action_low = -np.ones(2, dtype=np.float32)
    action_high = np.ones(2, dtype=np.float32)


def toy_demos(n: int = 2000, seed: int = 0) -> ToyDemos:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    w = rng.normal(size=(4, 2)).astype(np.float32)
    expert = np.tanh(obs @ w)
    corrupt = rng.random(n) < 0.3
    actions = np.where(corrupt[:, None], -expert, expert).astype(np.float32)
    return ToyDemos(obs, actions, corrupt, np.arange(n) // 100)


def make_policy(head: str, seed: int = 0) -> BCPolicy:
    torch.manual_seed(seed)
    return BCPolicy(
        4,
        2,
        head=head,
        hidden=(32, 32),
        obs_mean=np.zeros(4),
        obs_std=np.ones(4),
        action_low=-np.ones(2),
        action_high=np.ones(2),
        env_id="Toy-v0",
    )


def test_act_is_the_target_mixture_mean_clipped():
    policy = make_policy("choicenet").eval()
    obs = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32) * 50
    with torch.no_grad():
        mix = policy.mixture(torch.from_numpy(obs))
    expected = mix.mu[:, 0].clamp(-1, 1).numpy()
    np.testing.assert_allclose(policy.act(obs), expected, rtol=0, atol=0)
    assert mix.rho is not None and torch.all(mix.rho[:, 0] == 1)
    assert policy.correlations(obs).shape[1] == policy.mixture_weights(obs).shape[1]


@pytest.mark.parametrize("head", HEADS)
def test_save_load_round_trip_identical_actions(head, tmp_path):
    policy = make_policy(head)
    obs = np.random.default_rng(2).normal(size=(32, 4)).astype(np.float32)
    policy.save(tmp_path / "p")
    loaded = BCPolicy.load(tmp_path / "p", env_id="Toy-v0", obs_dim=4, act_dim=2)
    np.testing.assert_array_equal(policy.act(obs), loaded.act(obs))
    assert loaded.head.config() == policy.head.config()


def test_load_refuses_bad_folders(tmp_path):
    policy = make_policy("mse")
    folder = policy.save(tmp_path / "p")
    with pytest.raises(PolicyLoadError, match="obs_dim"):
        BCPolicy.load(folder, obs_dim=17)
    with pytest.raises(PolicyLoadError, match="env_id"):
        BCPolicy.load(folder, env_id="HalfCheetah-v5")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(PolicyLoadError, match="cannot load weights"):
        BCPolicy.load(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(PolicyLoadError, match="missing"):
        BCPolicy.load(folder)
    folder = policy.save(tmp_path / "q")
    config = json.loads((folder / "config.json").read_text())
    config["head"]["name"] = "no-such-head"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PolicyLoadError, match="unknown head"):
        BCPolicy.load(folder)
    with pytest.raises(PolicyLoadError, match="not a policy folder"):
        BCPolicy.load(tmp_path / "nowhere")


def _edit_config(folder, **changes) -> None:
    """Set keys of ``folder/config.json``; a ``head__<key>`` key sets one of the head's."""
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if key.startswith("head__"):
            config["head"][key[len("head__") :]] = value
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden": [10**12, 32]}, r"hidden must be an integer in \[1, 1,000,000\]"),
        ({"obs_dim": -4}, r"obs_dim must be an integer in \[1, 1,000,000\], got -4"),
        ({"act_dim": "2"}, r"act_dim must be an integer .*got '2'"),
        ({"hidden": "32"}, "hidden must be a list"),
        ({"head__in_features": 10**7}, "in_features must be an integer"),
        ({"head__n_mixtures": "five"}, "inconsistent policy config"),
        ({"head__n_mixtures": {"a": 1}}, "hyper-parameter n_mixtures"),
        ({"head__n_mixtures": 10**12}, "hyper-parameter n_mixtures"),
        ({"head__n_mixtures": 10**8}, "more than 1,000,000,000 parameters"),
        ({"hidden": [64, 64], "head__in_features": 64}, "do not fit"),
        ({"n_actions": 3}, "the head takes"),
        ({"choice": 7}, "unknown choice"),
    ],
)
def test_load_checks_the_config_before_allocating(tmp_path, monkeypatch, changes, message):
    folder = make_policy("choicenet").save(tmp_path / "p")
    _edit_config(folder, **changes)
    built = []  # the devices of the Linear layers built while loading
    init = torch.nn.Linear.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built.append(self.weight.device.type)

    monkeypatch.setattr(torch.nn.Linear, "__init__", recording_init)
    with pytest.raises(PolicyLoadError, match=message):
        BCPolicy.load(folder)
    assert set(built) <= {"meta"}  # nothing sized by the config was allocated


@pytest.mark.parametrize(
    "content, message",
    [
        (bytes(range(256)) * 4, "not a text file"),
        (b"[1, 2]", "holds a JSON list, not an object"),
        (b'{"obs_dim": ', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_load_refuses_a_config_that_is_not_a_json_object(tmp_path, content, message):
    folder = make_policy("mse").save(tmp_path / "p")
    (folder / "config.json").write_bytes(content)
    with pytest.raises(PolicyLoadError, match=message):
        BCPolicy.load(folder)


def test_predict_works_with_sb3_evaluate_policy():
    import gymnasium as gym
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(gym.make("InvertedDoublePendulum-v5"))
    obs_dim = env.observation_space.shape[0]
    torch.manual_seed(0)
    policy = BCPolicy(
        obs_dim,
        1,
        head="choicenet",
        hidden=(16,),
        action_low=env.action_space.low,
        action_high=env.action_space.high,
    )
    mean, std = evaluate_policy(policy, env, n_eval_episodes=2, deterministic=True)
    assert np.isfinite(mean) and mean > 0
    single, state = policy.predict(env.reset(seed=0)[0])
    assert single.shape == (1,) and state is None


def test_training_learns_the_expert_not_the_flip():
    demos = toy_demos()
    cfg = TrainConfig(steps=600, batch_size=128, hidden=(32, 32), log_every=200, torch_threads=1)
    policy = train_bc(demos, config=cfg, progress=False)
    clean = ~demos.is_corrupt
    expert = demos.actions[clean]
    err_cn = np.abs(policy.act(demos.observations[clean]) - expert).mean()
    mse = train_bc(demos, config=TrainConfig(**{**cfg.__dict__, "head": "mse"}), progress=False)
    err_mse = np.abs(mse.act(demos.observations[clean]) - expert).mean()
    assert err_cn < 0.5 * err_mse
    quality = policy.data_quality(demos)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(~demos.is_corrupt, quality) > 0.9


def test_train_bc_steps_the_heads_lambda1_schedule(monkeypatch):
    """train_bc calls set_progress before every step: the loss sees the annealed lambda1."""
    from choicebc.heads import ChoiceNetHead
    from choicebc.heads.choicenet import lambda1_schedule

    seen: list[float] = []
    fused = ChoiceNetHead.training_loss

    def recording(head, h, y):
        if head.training:  # not the validation passes
            seen.append(head.lambda1)
        return fused(head, h, y)

    monkeypatch.setattr(ChoiceNetHead, "training_loss", recording)
    cfg = TrainConfig(
        steps=20, batch_size=32, hidden=(8,), log_every=10, torch_threads=1, choice="step"
    )
    kwargs = {"lambda1": 0.1, "lambda1_start": 2.0, "lambda1_anneal": 0.5}
    policy = train_bc(toy_demos(200), config=cfg, progress=False, head_kwargs=kwargs)
    assert seen == pytest.approx([lambda1_schedule(0.1, 2.0, 0.5, t, 20) for t in range(20)])
    assert seen[0] == pytest.approx(2.0) and policy.head.lambda1 == pytest.approx(0.1)


def test_resume_gives_the_same_result_as_uninterrupted(tmp_path, monkeypatch):
    demos = toy_demos(600)
    cfg = TrainConfig(
        steps=40, batch_size=32, hidden=(16,), log_every=10, checkpoint_every=20, choice="step"
    )
    full = train_bc(demos, config=cfg, out=tmp_path / "a", progress=False)

    calls = {"n": 0}
    real = train_mod.sample_batch

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 26:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "sample_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_bc(demos, config=cfg, out=tmp_path / "b", progress=False)
    monkeypatch.setattr(train_mod, "sample_batch", real)
    resumed = train_bc(demos, config=cfg, out=tmp_path / "b", resume=True, progress=False)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["10", "20", "30", "40"]


def test_nan_batch_triggers_the_guard_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    demos = toy_demos(600)
    cfg = TrainConfig(steps=40, batch_size=32, hidden=(16,), checkpoint_every=10, choice="step")
    calls = {"n": 0}
    real = train_mod.sample_batch

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        obs, act = real(*args, **kwargs)
        if calls["n"] == 15:
            obs = obs.clone()
            obs[0, 0] = float("nan")
        return obs, act

    monkeypatch.setattr(train_mod, "sample_batch", poisoned)
    with pytest.raises(TrainingDivergedError, match="step 14"):
        train_bc(demos, config=cfg, out=tmp_path / "run", progress=False)
    kept = BCPolicy.load(tmp_path / "run" / "checkpoint")
    assert all(torch.isfinite(p).all() for p in kept.parameters())
    state = torch.load(tmp_path / "run" / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 10


def test_a_bad_step_with_a_finite_loss_never_reaches_a_checkpoint(tmp_path, monkeypatch):
    # an inf gradient under a finite loss: the optimizer step leaves NaN parameters behind
    demos = toy_demos(600)
    cfg = TrainConfig(steps=40, batch_size=32, hidden=(16,), checkpoint_every=10, choice="step")
    calls = {"n": 0}
    real_step = torch.optim.Adam.step

    def poisoned_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 20:  # step index 19: the checkpoint of step 20 comes right after
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", poisoned_step)
    with pytest.raises(TrainingDivergedError, match="non-finite parameters at step 20"):
        train_bc(demos, config=cfg, out=tmp_path / "run", progress=False)
    kept = BCPolicy.load(tmp_path / "run" / "checkpoint")
    assert all(torch.isfinite(p).all() for p in kept.parameters())
    state = torch.load(tmp_path / "run" / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 10


def test_bad_demos_raise_clear_errors():
    demos = toy_demos(100)
    demos.actions[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_bc(demos, steps=5, progress=False)
    empty = ToyDemos(np.zeros((0, 4)), np.zeros((0, 2)), np.zeros(0, bool), np.zeros(0))
    with pytest.raises(ValueError, match="empty"):
        train_bc(empty, steps=5, progress=False)
