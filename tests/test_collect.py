"""cb.collect: requested corrupt share, true labels, mixing modes, budgets, seeds, errors."""

from __future__ import annotations

import argparse
import hashlib
import importlib

import numpy as np
import pytest
from choicebc.envs import POINT_REACH_ID, PointReachExpert, UnknownEnvError

import choicebc as cb
from choicebc.adversaries import UnknownAdversaryError, make_adversary
from choicebc.cli import main
from choicebc.collect import PolicyDimensionError, collect
from choicebc.demoset import DemoSet
from choicebc.experts import load_expert, shipped_experts
from choicebc.sim import ActionError, episode_seed

CHEETAH = "HalfCheetah-v5"


class LinearExpert:
    """A fixed random linear policy squashed into the box: deterministic and row-independent."""

    def __init__(self, obs_dim: int = 17, act_dim: int = 6, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.w = (0.5 * rng.standard_normal((obs_dim, act_dim))).astype(np.float32)
        self.b = (0.3 * rng.standard_normal(act_dim)).astype(np.float32)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        # float64 then float32: BLAS sums a 1-row and a many-row float32 product in different
        # orders, and the collector's tests compare runs with different num_envs bit for bit
        out = np.tanh(obs.astype(np.float64) @ self.w.astype(np.float64) + self.b)
        return out.astype(np.float32)

    def __repr__(self) -> str:
        return "LinearExpert(seed=0)"


def binomial_tolerance(p: float, n: int, sigmas: float = 4.0) -> float:
    return sigmas * np.sqrt(p * (1 - p) / n)


def file_digest(demos: DemoSet, path) -> str:
    demos.save(path, overwrite=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_step_mix_has_the_requested_share_and_true_labels():
    expert = LinearExpert()
    demos = collect(CHEETAH, expert, make_adversary("flipped", expert), ratio=0.3, mix="step",
                    episodes=4, num_envs=4, seed=0, progress=False)  # fmt: skip
    assert demos.num_episodes == 4 and demos.num_transitions == 4000
    assert abs(demos.is_corrupt.mean() - 0.3) < binomial_tolerance(0.3, 4000)
    want = expert(demos.observations)
    c = demos.is_corrupt
    # label 1: the recorded (and executed) action is -expert(obs); label 0: expert(obs)
    np.testing.assert_allclose(demos.actions[c], -want[c], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(demos.actions[~c], want[~c], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(demos.executed_actions, demos.actions)
    # episodes: in order, seeded as the simulator numbers them, time-limit truncated
    assert demos.episode_seeds.tolist() == [episode_seed(0, j) for j in range(4)]
    assert demos.episode_lengths.tolist() == [1000] * 4
    ends = np.cumsum(demos.episode_lengths) - 1
    assert demos.truncated[ends].all() and demos.truncated.sum() == 4
    assert not demos.terminated.any()
    for ep in demos.episodes():
        assert ep["return"] == pytest.approx(ep["rewards"].sum(), rel=1e-12)
    assert demos.attrs["ratio"] == 0.3 and demos.attrs["mix"] == "step"
    assert demos.attrs["expert"] == "LinearExpert(seed=0)"
    assert demos.attrs["adversary"] == "FlippedAdversary(expert=LinearExpert(seed=0))"
    assert demos.attrs["env_version"] == "v5"


def test_label_mix_lets_the_expert_drive_and_corrupts_only_the_record():
    expert = LinearExpert()
    clean = collect(CHEETAH, expert, None, ratio=0.0, episodes=2, seed=4, progress=False)
    noisy = collect(CHEETAH, expert, "flipped", ratio=0.4, mix="label", episodes=2, seed=4,
                    progress=False)  # fmt: skip
    # the states are the expert's own: identical to a clean run with the same seed
    np.testing.assert_array_equal(noisy.observations, clean.observations)
    np.testing.assert_array_equal(noisy.executed_actions, clean.actions)
    np.testing.assert_array_equal(noisy.rewards, clean.rewards)
    c = noisy.is_corrupt
    assert abs(c.mean() - 0.4) < binomial_tolerance(0.4, len(c))
    np.testing.assert_array_equal(noisy.actions[c], -clean.actions[c])
    np.testing.assert_array_equal(noisy.actions[~c], clean.actions[~c])
    assert not clean.is_corrupt.any()


def test_episode_mix_labels_whole_episodes():
    expert = PointReachExpert()
    demos = collect(POINT_REACH_ID, expert, "flipped", ratio=0.5, mix="episode", episodes=30,
                    num_envs=6, seed=2, progress=False)  # fmt: skip
    share = demos.adversary_share
    assert set(np.unique(share).tolist()) == {0.0, 1.0}
    assert abs((share == 1).mean() - 0.5) < binomial_tolerance(0.5, 30)
    # the analytic expert reaches the goal (terminated); flipped episodes run to the limit
    ends = np.cumsum(demos.episode_lengths) - 1
    np.testing.assert_array_equal(demos.terminated[ends], share == 0)
    assert (demos.episode_lengths[share == 1] == 200).all()


@pytest.mark.parametrize("mix", ["step", "episode", "label"])
def test_ratio_zero_and_one(mix):
    expert = PointReachExpert()
    none = collect(POINT_REACH_ID, expert, "flipped", ratio=0.0, mix=mix, episodes=3, seed=0,
                   progress=False)  # fmt: skip
    everything = collect(POINT_REACH_ID, expert, "flipped", ratio=1.0, mix=mix, episodes=3,
                         seed=0, progress=False)  # fmt: skip
    assert not none.is_corrupt.any()
    assert everything.is_corrupt.all()
    np.testing.assert_array_equal(everything.actions, -expert(everything.observations))


def test_same_seed_same_file_and_other_seed_other_data(tmp_path):
    expert = PointReachExpert()
    adversary = make_adversary("random", expert)  # stochastic: collect reseeds it

    def run(seed):
        return collect(POINT_REACH_ID, expert, adversary, ratio=0.5, mix="step", episodes=6,
                       num_envs=3, seed=seed, progress=False)  # fmt: skip

    a, b, c = run(11), run(11), run(12)
    assert file_digest(a, tmp_path / "a.h5") == file_digest(b, tmp_path / "b.h5")
    assert a.equals(b)
    assert not np.array_equal(a.is_corrupt[:50], c.is_corrupt[:50])
    assert a.episode_seeds[0] != c.episode_seeds[0]


@pytest.mark.parametrize(("num_envs", "backend"), [(1, "cpu"), (4, "cpu"), (7, "cpu"), (3, "gym")])
def test_data_do_not_depend_on_num_envs(num_envs, backend):
    """Corruption draws belong to episodes, not to slots: N, pipelining and backend do not
    matter with a row-independent deterministic expert and the flipped adversary."""
    expert = PointReachExpert()
    ref = collect(POINT_REACH_ID, expert, "flipped", ratio=0.3, episodes=7, num_envs=2, seed=5,
                  progress=False)  # fmt: skip
    other = collect(POINT_REACH_ID, expert, "flipped", ratio=0.3, episodes=7, num_envs=num_envs,
                    seed=5, backend=backend, progress=False)  # fmt: skip
    np.testing.assert_array_equal(other.is_corrupt, ref.is_corrupt)
    np.testing.assert_array_equal(other.episode_lengths, ref.episode_lengths)
    np.testing.assert_array_equal(other.episode_seeds, ref.episode_seeds)
    if backend == "cpu":
        np.testing.assert_array_equal(other.observations, ref.observations)
        np.testing.assert_array_equal(other.actions, ref.actions)
    else:  # gymnasium's envs: the same episodes up to float32 rounding of the observation
        np.testing.assert_allclose(other.observations, ref.observations, atol=1e-5)


def test_transition_budget_takes_episodes_in_order_and_cuts_the_last():
    expert = LinearExpert()
    cut = collect(CHEETAH, expert, "flipped", ratio=0.2, transitions=2500, num_envs=2, seed=1,
                  progress=False)  # fmt: skip
    full = collect(CHEETAH, expert, "flipped", ratio=0.2, episodes=3, num_envs=3, seed=1,
                   progress=False)  # fmt: skip
    assert cut.num_transitions == 2500
    assert cut.episode_lengths.tolist() == [1000, 1000, 500]
    np.testing.assert_array_equal(cut.episode_seeds, full.episode_seeds)
    np.testing.assert_array_equal(cut.observations, full.observations[:2500])
    np.testing.assert_array_equal(cut.is_corrupt, full.is_corrupt[:2500])
    last = cut.episode(2)
    assert last["truncated"][-1] and last["truncated"].sum() == 1
    np.testing.assert_array_equal(last["final_obs"], full.observations[2500])
    assert last["return"] == pytest.approx(full.rewards[2000:2500].sum(), rel=1e-12)


def test_bad_inputs_raise_clear_errors():
    expert = LinearExpert()
    kw = {"episodes": 1, "progress": False}
    for ratio in (-0.1, 1.5, float("nan"), True, "0.3"):
        with pytest.raises(ValueError, match="ratio"):
            collect(CHEETAH, expert, "flipped", ratio=ratio, **kw)
    with pytest.raises(ValueError, match="unknown mix"):
        collect(CHEETAH, expert, "flipped", ratio=0.1, mix="steps", **kw)
    with pytest.raises(ValueError, match="exactly one budget"):
        collect(CHEETAH, expert, "flipped", ratio=0.1, progress=False)
    with pytest.raises(ValueError, match="exactly one budget"):
        collect(CHEETAH, expert, "flipped", ratio=0.1, episodes=1, transitions=5, progress=False)
    with pytest.raises(ValueError, match="episodes must be an integer >= 1, got 0"):
        collect(CHEETAH, expert, "flipped", ratio=0.1, episodes=0, progress=False)
    with pytest.raises(ValueError, match="transitions must be an integer >= 1, got 0"):
        collect(CHEETAH, expert, "flipped", ratio=0.1, transitions=0, progress=False)
    with pytest.raises(ValueError, match="needs an adversary"):
        collect(CHEETAH, expert, None, ratio=0.1, **kw)
    with pytest.raises(UnknownEnvError, match="HalfCheetah-v5"):
        collect("HalfCheetah-v9", expert, "flipped", ratio=0.1, **kw)
    with pytest.raises(UnknownAdversaryError, match="flipped"):
        collect(CHEETAH, expert, "fliped", ratio=0.1, **kw)


def test_policies_that_do_not_fit_the_env_are_rejected():
    kw = {"ratio": 0.1, "episodes": 1, "progress": False}
    with pytest.raises(PolicyDimensionError, match=r"needs \(1, 6\)"):
        collect(CHEETAH, LinearExpert(act_dim=3), "flipped", **kw)
    with pytest.raises(PolicyDimensionError, match=r"observations of shape \(1, 17\)"):
        collect(CHEETAH, LinearExpert(obs_dim=11, act_dim=6), "flipped", **kw)
    # declared env / sizes are checked before any simulation
    with pytest.raises(PolicyDimensionError, match="is for choicebc/PointReach-v0"):
        collect(CHEETAH, PointReachExpert(), "flipped", **kw)
    with pytest.raises(PolicyDimensionError, match="adversary"):
        adversary = make_adversary("random", LinearExpert(), low=[-1, -1], high=[1, 1])
        collect(CHEETAH, LinearExpert(), adversary, **kw)

    def nan_adversary(obs):
        return np.full((len(obs), 6), np.nan, np.float32)

    with pytest.raises(ActionError, match="adversary returned NaN"):
        collect(CHEETAH, LinearExpert(), nan_adversary, ratio=1.0, episodes=1, progress=False)


# ``choicebc.collect`` the attribute is the function cb.collect; the CLI module is this one
collect_module = importlib.import_module("choicebc.collect")


def collect_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    collect_module.add_arguments(parser)
    return collect_module.run(parser.parse_args(argv))


def test_cli_writes_a_file_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "reach.h5"
    argv = [POINT_REACH_ID, str(out), "--episodes", "4", "--ratio", "0.5", "--no-progress"]
    assert collect_cli(argv) == 0
    demos = DemoSet.load(out)
    assert demos.num_episodes == 4 and demos.attrs["adversary_kind"] == "flipped"
    assert "wrote" in capsys.readouterr().out
    before = out.read_bytes()
    assert collect_cli([*argv, "--seed", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert collect_cli([*argv, "--seed", "1", "--overwrite"]) == 0
    assert DemoSet.load(out).attrs["seed"] == 1
    assert collect_cli([POINT_REACH_ID, str(tmp_path / "x.h5"), "--ratio", "1.2"]) == 2
    assert "ratio must be in [0, 1]" in capsys.readouterr().err
    assert collect_cli([POINT_REACH_ID, str(tmp_path / "no" / "x.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert collect_cli([CHEETAH, str(tmp_path / "x.h5"), "--expert", str(tmp_path)]) == 2
    assert "choicebc expert train" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reach.h5"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--episodes", "0"], "--episodes must be an integer >= 1, got 0"),
        (["--episodes", "-3"], "--episodes must be an integer >= 1, got -3"),
        (["--transitions", "0"], "--transitions must be an integer >= 1, got 0"),
        (["--num-envs", "0"], "--num-envs must be an integer >= 1, got 0"),
    ],
)
def test_cli_refuses_non_positive_counts(tmp_path, capsys, flags, message):
    assert main(["collect", POINT_REACH_ID, str(tmp_path / "x.h5"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "None" not in err and err.count("\n") == 1


def test_cli_checks_the_out_path_before_collecting(read_only_folder, capsys):
    out = read_only_folder / "x.h5"
    assert main(["collect", POINT_REACH_ID, str(out), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out}: cannot write to folder" in err and err.count("\n") == 1


def test_public_names():
    assert cb.collect is collect and cb.DemoSet is DemoSet
    assert cb.make_adversary is make_adversary and cb.load_expert is load_expert


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"])
def test_shipped_experts_load_and_act(env_id):
    assert env_id in shipped_experts(), f"demos/experts/{env_id} is missing"
    expert = load_expert(env_id)
    demos = collect(env_id, expert, "flipped", ratio=0.3, transitions=300, num_envs=2, seed=0,
                    progress=False)  # fmt: skip
    assert demos.num_transitions == 300
    assert np.isfinite(demos.observations).all()
    low, high = demos.action_low, demos.action_high
    assert ((demos.actions >= low) & (demos.actions <= high)).all()
    want = expert(demos.observations)
    c = demos.is_corrupt
    np.testing.assert_allclose(demos.actions[~c], want[~c], atol=1e-5)
    np.testing.assert_allclose(demos.actions[c], -want[c], atol=1e-5)
