"""The ``cpu`` backend reproduces gymnasium's envs step for step (and so does the ``gym`` one)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from choicebc.envs import MujocoTask, known_env_ids

from choicebc.sim import make_batched

# float32 observations are compared with gymnasium's float64 ones cast to float32: equal bits
# are expected; 1e-6 leaves room for a different BLAS/libm summation order on other machines
ATOL = 1e-6

GYMNASIUM_TASKS = [e for e in known_env_ids() if not e.startswith("choicebc/")]


def _steps_needed(env) -> int:
    """>= 200 steps, and enough for an episode to end in a task that only truncates."""
    if type(env.task).terminated is MujocoTask.terminated:
        return env.task.max_episode_steps + 5
    return 250


@pytest.mark.parametrize("env_id", known_env_ids())
def test_cpu_backend_matches_gymnasium_env(env_id):
    """Slot 0 of the cpu backend against ``gym.make(env_id)`` reset with the same episode seeds."""
    env = make_batched(env_id, num_envs=2, backend="cpu", seed=11)
    ref = gym.make(env_id)
    obs, info = env.reset()
    ref_obs, _ = ref.reset(seed=int(info["episode_seed"][0]))
    np.testing.assert_allclose(obs[0], ref_obs, atol=ATOL, rtol=0)
    rng = np.random.default_rng(3)
    episodes_ended = 0
    for _ in range(_steps_needed(env)):
        actions = rng.uniform(env.action_low, env.action_high, (2, env.act_dim)).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(actions)
        ref_obs, ref_reward, ref_term, ref_trunc, _ = ref.step(actions[0])
        np.testing.assert_allclose(info["final_obs"][0], ref_obs, atol=ATOL, rtol=0)
        assert reward[0] == pytest.approx(ref_reward, abs=ATOL, rel=ATOL)
        assert (terminated[0], truncated[0]) == (ref_term, ref_trunc)
        assert obs.dtype == np.float32 and reward.dtype == np.float64
        if terminated[0] or truncated[0]:
            episodes_ended += 1
            ref_obs, _ = ref.reset(seed=int(info["episode_seed"][0]))
            assert info["episode_index"][0] >= 2  # episodes 0, 1 started at reset
            np.testing.assert_allclose(obs[0], ref_obs, atol=ATOL, rtol=0)
    assert episodes_ended >= 1, "the run must cover an episode end and an auto-reset"
    env.close()
    ref.close()


@pytest.mark.parametrize("env_id", GYMNASIUM_TASKS)
def test_cpu_and_gym_backends_agree(env_id):
    """Both backends, same seed and actions: same episodes, in every slot, across auto-resets."""
    n = 3
    cpu = make_batched(env_id, n, backend="cpu", seed=5)
    ref = make_batched(env_id, n, backend="gym", seed=5)
    obs, info = cpu.reset()
    ref_obs, ref_info = ref.reset()
    np.testing.assert_allclose(obs, ref_obs, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(info["episode_seed"], ref_info["episode_seed"])
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(_steps_needed(cpu)):
        actions = rng.uniform(-1.5, 1.5, (n, cpu.act_dim)).astype(np.float32)  # clipped by both
        out, ref_out = cpu.step(actions), ref.step(actions)
        np.testing.assert_allclose(out[0], ref_out[0], atol=ATOL, rtol=0)
        np.testing.assert_allclose(out[1], ref_out[1], atol=ATOL, rtol=ATOL)
        np.testing.assert_array_equal(out[2], ref_out[2])
        np.testing.assert_array_equal(out[3], ref_out[3])
        for key in ("final_obs", "episode_return"):
            np.testing.assert_allclose(out[4][key], ref_out[4][key], atol=1e-5, rtol=1e-9)
        for key in ("episode_length", "episode_index", "episode_seed"):
            np.testing.assert_array_equal(out[4][key], ref_out[4][key])
        ended += int((out[2] | out[3]).sum())
    assert ended >= 1
    cpu.close()
    ref.close()
