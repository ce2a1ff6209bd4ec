"""cb.evaluate: exactly `episodes` seeded episodes, no short-episode bias, any policy type."""

from __future__ import annotations

import argparse
import json
import threading
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

import choicebc as cb
from choicebc import evaluation, evaluation_cli
from choicebc.cli import main as choicebc_main
from choicebc.evaluation import EvalResult, evaluate
from choicebc.sim import ActionError, UnknownEnvError, episode_seed


def rowwise_policy(obs: np.ndarray) -> np.ndarray:
    """Deterministic and row-independent, so results cannot depend on batch composition."""
    return np.tanh(0.8 * obs[:, :3] + 0.2).astype(np.float32)


def gymnasium_return(env_id: str, seed: int, policy) -> tuple[float, int]:
    """The reference: one gymnasium episode from ``reset(seed=seed)``."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs[None].astype(np.float32))[0])
        total += reward
        steps += 1
        done = terminated or truncated
    env.close()
    return total, steps


def test_runs_exactly_the_seeded_episodes_in_order():
    res = evaluate(rowwise_policy, "Hopper-v5", episodes=7, num_envs=3, seed=5, backend="cpu")
    assert res.returns.shape == res.lengths.shape == res.seeds.shape == (7,)
    assert res.seeds.tolist() == [episode_seed(5, j) for j in range(7)]
    for j in (0, 4, 6):  # each episode j is gymnasium's episode from seed episode_seed(5, j)
        ret, length = gymnasium_return("Hopper-v5", int(res.seeds[j]), rowwise_policy)
        assert res.returns[j] == pytest.approx(ret, rel=1e-9, abs=1e-6)
        assert res.lengths[j] == length
    assert res.lengths.min() < res.lengths.max()  # lengths differ: bias would be possible
    assert res.steps_per_second == pytest.approx(res.lengths.sum() / res.wall_time)


@pytest.mark.parametrize(
    ("num_envs", "backend", "pipeline"),
    [(1, "cpu", True), (2, "cpu", True), (5, "cpu", False), (9, "cpu", True), (4, "gym", True)],
)
def test_results_do_not_depend_on_num_envs_or_backend(num_envs, backend, pipeline):
    """A vectorised evaluator biased toward short episodes would change with num_envs."""

    def policy(obs):
        return np.tanh(0.5 * obs[:, :6] - 0.1).astype(np.float32)

    ref = evaluate(policy, "Walker2d-v5", episodes=9, num_envs=3, seed=1, backend="cpu")
    res = evaluate(
        policy,
        "Walker2d-v5",
        episodes=9,
        num_envs=num_envs,
        seed=1,
        backend=backend,
        pipeline=pipeline,
    )
    np.testing.assert_allclose(res.returns, ref.returns, rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(res.lengths, ref.lengths)
    assert res.backend == backend and res.num_envs == min(num_envs, 9)


def test_torch_module_policy_keeps_its_mode_and_the_thread_count():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(11, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    net.train()
    threads = torch.get_num_threads()
    res = evaluate(net, "Hopper-v5", episodes=4, num_envs=2, seed=0)
    assert net.training and torch.get_num_threads() == threads
    with torch.no_grad():

        def same_net(obs):
            return net(torch.from_numpy(obs)).numpy()

        ref = evaluate(same_net, "Hopper-v5", episodes=4, num_envs=2, seed=0)
    np.testing.assert_allclose(res.returns, ref.returns, rtol=1e-6)


def test_a_plain_callable_is_called_one_thread_at_a_time_in_a_fixed_order():
    """Two half-batches run on two threads; a callable that is not declared thread-safe (here
    one with a generator) is never entered twice at once, and gives the same result every run."""
    state = {"inside": 0, "most": 0}
    lock = threading.Lock()

    def noisy_policy(rng):
        def policy(obs):
            with lock:
                state["inside"] += 1
                state["most"] = max(state["most"], state["inside"])
            time.sleep(0.001)  # long enough for the other half's thread to arrive
            actions = rng.uniform(-1, 1, (len(obs), 3)).astype(np.float32)
            with lock:
                state["inside"] -= 1
            return actions

        return policy

    runs = [
        evaluate(noisy_policy(np.random.default_rng(0)), "Hopper-v5", 6, 4, seed=3, backend="cpu")
        for _ in range(2)
    ]
    assert state["most"] == 1
    np.testing.assert_array_equal(runs[0].returns, runs[1].returns)
    np.testing.assert_array_equal(runs[0].lengths, runs[1].lengths)


def test_free_running_halves_give_the_sequential_result():
    """A torch policy on halves >= FREE_RUNNING_MIN_HALF: the two threads run free (episodes go
    to whichever half is ready first), yet every episode's return is the one-batch loop's."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(11, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    with torch.no_grad():  # small actions: Hopper falls after 54-61 steps, not all at once
        net[2].weight.mul_(0.1)
        net[2].bias.zero_()
    n = 2 * evaluation.FREE_RUNNING_MIN_HALF
    kw = dict(episodes=n + 40, num_envs=n, seed=2, backend="cpu")
    ref = evaluate(net, "Hopper-v5", pipeline=False, **kw)
    runs = [evaluate(net, "Hopper-v5", **kw) for _ in range(2)]
    assert ref.lengths.min() < ref.lengths.max()  # slots free up at different times
    for res in runs:
        np.testing.assert_allclose(res.returns, ref.returns, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(res.lengths, ref.lengths)


def test_a_half_that_runs_dry_takes_the_other_halfs_episodes(monkeypatch):
    """Every slot runs one 1000-step episode and one half's physics is slowed: the fast half
    runs dry first, takes half of the slow half's running episodes (again and again), and every
    episode's return is still the one-batch loop's."""
    from choicebc.sim.cpu import CpuBatchedEnv

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(17, 32), torch.nn.Tanh(), torch.nn.Linear(32, 6))
    n = 2 * evaluation.FREE_RUNNING_MIN_HALF
    kw = dict(episodes=n, num_envs=n, seed=4, backend="cpu")
    ref = evaluate(net, "HalfCheetah-v5", pipeline=False, **kw)

    built, moves = [], []
    init, physics, take = (
        CpuBatchedEnv.__init__,
        CpuBatchedEnv._physics,
        CpuBatchedEnv.take_episodes,
    )

    def spy_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built.append(self)

    def slow_physics(self):
        if self is built[0]:
            time.sleep(0.001)
        physics(self)

    def spy_take(self, source, count):
        moves.append(take(self, source, count))
        return moves[-1]

    monkeypatch.setattr(CpuBatchedEnv, "__init__", spy_init)
    monkeypatch.setattr(CpuBatchedEnv, "_physics", slow_physics)
    monkeypatch.setattr(CpuBatchedEnv, "take_episodes", spy_take)
    res = evaluate(net, "HalfCheetah-v5", **kw)
    assert moves and moves[0] == n // 4  # half of the slow half's 32 running episodes
    np.testing.assert_allclose(res.returns, ref.returns, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(res.lengths, ref.lengths)


def test_a_policy_error_on_one_half_stops_the_evaluation():
    calls = []

    class Flaky(torch.nn.Module):  # thread-safe: both halves call it concurrently
        def forward(self, obs):
            calls.append(len(obs))
            if len(calls) > 6:
                return torch.zeros(len(obs), 2)  # wrong action shape for Hopper (3)
            return torch.zeros(len(obs), 3)

    # halves of 2 take turns; halves of FREE_RUNNING_MIN_HALF run free: both paths stop
    for n in (4, 2 * evaluation.FREE_RUNNING_MIN_HALF):
        calls.clear()
        with pytest.raises(ActionError, match="shape"):
            evaluate(Flaky(), "Hopper-v5", episodes=2 * n, num_envs=n, seed=0, backend="cpu")


def test_bc_policy_plugs_in():
    from choicebc.policy import BCPolicy

    torch.manual_seed(0)
    policy = BCPolicy(17, 6, head="mse", hidden=(32,), env_id="HalfCheetah-v5")
    res = cb.evaluate(policy, "HalfCheetah-v5", episodes=2, num_envs=2, seed=0)
    assert res.lengths.tolist() == [1000, 1000]
    assert np.isfinite(res.returns).all()


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="episodes must be an integer >= 1"):
        evaluate(rowwise_policy, "Hopper-v5", episodes=0)
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        evaluate(rowwise_policy, "Hopper-v5", episodes=3, num_envs=0)
    with pytest.raises(UnknownEnvError, match="Known ids"):
        evaluate(rowwise_policy, "Hoper-v5", episodes=3)
    with pytest.raises(TypeError, match="callable"):
        evaluate("not a policy", "Hopper-v5", episodes=3)
    with pytest.raises(ActionError, match=r"shape \(\d+, 3\), got \(\d+, 2\)"):
        evaluate(lambda obs: obs[:, :2], "Hopper-v5", episodes=2, num_envs=2)
    with pytest.raises(ActionError, match="NaN"):
        evaluate(lambda obs: np.full((len(obs), 3), np.nan), "Hopper-v5", episodes=2)


def _result(returns, reference) -> EvalResult:
    n = len(returns)
    return EvalResult(
        env_id="Hopper-v5",
        returns=np.asarray(returns, float),
        lengths=np.full(n, 10),
        seeds=np.arange(n),
        unstable=np.zeros(n, bool),
        steps_per_second=1.0,
        wall_time=1.0,
        backend="cpu",
        num_envs=1,
        seed=0,
        reference=reference,
    )


def test_normalized_score_uses_the_reference_returns():
    res = _result([40.0, 80.0], reference=(-20.0, 180.0))
    assert res.mean_return == 60.0 and res.std_return == 20.0
    assert res.normalized_score == pytest.approx(40.0)  # (60 + 20) / (180 + 20) * 100
    assert _result([1.0], reference=None).normalized_score is None
    assert json.loads(json.dumps(res.as_dict()))["normalized_score"] == pytest.approx(40.0)
    assert "normalized score 40.0" in str(res)


def cli_main(argv: list[str]) -> int:
    """``choicebc evaluate ...`` through this module's own parser."""
    parser = argparse.ArgumentParser()
    evaluation_cli.add_arguments(parser)
    return evaluation_cli.run(parser.parse_args(argv[1:]))


def test_cli_evaluates_a_saved_policy_and_an_expert(tmp_path, capsys):
    from choicebc.policy import BCPolicy

    folder = BCPolicy(2, 2, head="mse", hidden=(8,), env_id="choicebc/PointReach-v0").save(
        tmp_path / "policy"
    )
    out = tmp_path / "res.json"
    argv = ["evaluate", "--policy", str(folder), "--episodes", "3", "--num-envs", "2"]
    assert cli_main([*argv, "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["env_id"] == "choicebc/PointReach-v0" and len(saved["returns"]) == 3
    argv = ["evaluate", "--expert", "choicebc/PointReach-v0", "--episodes", "4", "--num-envs", "4"]
    assert cli_main(argv) == 0
    assert "choicebc/PointReach-v0: return" in capsys.readouterr().out
    assert cli_main(["evaluate"]) == 2
    assert "exactly one of --policy" in capsys.readouterr().err


def one_line_error(capsys) -> str:
    """The stderr of a refused command: one line, no traceback."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def reach_policy(tmp_path):
    from choicebc.policy import BCPolicy

    return BCPolicy(2, 2, head="mse", hidden=(8,), env_id="choicebc/PointReach-v0").save(
        tmp_path / "policy"
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--episodes", "0"], "--episodes must be an integer >= 1, got 0"),
        (["--episodes", "-3"], "--episodes must be an integer >= 1, got -3"),
        (["--num-envs", "0"], "--num-envs must be an integer >= 1, got 0"),
    ],
)
def test_cli_refuses_non_positive_counts(reach_policy, capsys, flags, message):
    assert choicebc_main(["evaluate", "--policy", str(reach_policy), *flags]) == 2
    err = one_line_error(capsys)
    assert message in err and "None" not in err


def _edit_config(folder, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def test_cli_refuses_a_policy_that_does_not_fit_the_task(reach_policy, tmp_path, capsys):
    from choicebc.policy import BCPolicy

    argv = ["evaluate", "--policy", str(reach_policy), "--episodes", "2"]
    assert choicebc_main([*argv, "--env-id", "HalfCheetah-v5"]) == 2
    assert "trained on choicebc/PointReach-v0, not HalfCheetah-v5" in one_line_error(capsys)
    # a config whose sizes are not the task's (hand-edited, or from another version)
    wide = BCPolicy(5, 2, head="mse", hidden=(8,), env_id="choicebc/PointReach-v0")
    argv = ["evaluate", "--policy", str(wide.save(tmp_path / "wide")), "--episodes", "2"]
    assert choicebc_main(argv) == 2
    assert "takes obs_dim=5, act_dim=2 but choicebc/PointReach-v0 has obs_dim=2" in (
        one_line_error(capsys)
    )
    anonymous = BCPolicy(2, 2, head="mse", hidden=(8,)).save(tmp_path / "anonymous")
    argv = ["evaluate", "--policy", str(anonymous), "--episodes", "2"]
    assert choicebc_main([*argv, "--env-id", "HalfCheetah-v5"]) == 2
    assert "takes obs_dim=2, act_dim=2 but HalfCheetah-v5 has obs_dim=17" in (
        one_line_error(capsys)
    )
    _edit_config(reach_policy, env_id="NoSuchTask-v0")
    assert choicebc_main(["evaluate", "--policy", str(reach_policy), "--episodes", "2"]) == 2
    assert "a task this choicebc does not know (unknown env id 'NoSuchTask-v0'" in (
        one_line_error(capsys)
    )


def test_cli_checks_the_json_path_before_evaluating(
    reach_policy, read_only_folder, monkeypatch, capsys
):
    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated although the result cannot be written")

    monkeypatch.setattr(evaluation, "evaluate", no_evaluation)
    out = read_only_folder / "result.json"
    argv = ["evaluate", "--policy", str(reach_policy), "--episodes", "2", "--json", str(out)]
    assert choicebc_main(argv) == 2
    assert f"cannot write {out}: cannot write to folder" in one_line_error(capsys)


def free_running_policy(obs: np.ndarray) -> np.ndarray:
    return rowwise_policy(obs)


free_running_policy.thread_safe = True  # halves of >= 32 rows then run free and swap episodes


@pytest.mark.parametrize(
    "policy, episodes, num_envs, pipeline",
    [
        (rowwise_policy, 7, 3, True),  # two halves taking turns
        (rowwise_policy, 7, 3, False),  # one batch
        (free_running_policy, 200, 64, True),  # free-running halves, episodes moved between
    ],
)
def test_progress_bar_counts_every_env_step_once(capsys, policy, episodes, num_envs, pipeline):
    res = evaluate(
        policy, "Hopper-v5", episodes, num_envs, seed=5, pipeline=pipeline,
        progress="evaluate rowwise",
    )  # fmt: skip
    steps = int(res.lengths.sum())
    assert steps < episodes * 1000  # Hopper episodes end early: the total is cut to the steps run
    err = capsys.readouterr().err
    assert "evaluate rowwise: 100%" in err and f"{steps}/{steps}" in err
