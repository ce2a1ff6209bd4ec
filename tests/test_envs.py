"""Task definitions: reset distribution as gymnasium's, backend-neutral (numpy/torch) functions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from choicebc.envs import TASKS, UnknownEnvError, get_task, known_env_ids

from choicebc.sim import make_batched


def test_unknown_env_id_lists_known_ids():
    with pytest.raises(UnknownEnvError) as err:
        get_task("HalfCheetah-v4")
    message = str(err.value)
    assert "'HalfCheetah-v5'" in message  # the closest match is suggested
    for env_id in known_env_ids():
        assert env_id in message


@pytest.mark.parametrize("env_id", known_env_ids())
def test_spaces_match_gymnasium(env_id):
    task = get_task(env_id)
    env = gym.make(env_id)
    assert env.observation_space.shape == (task.obs_dim,)
    assert env.action_space.shape == (task.act_dim,)
    np.testing.assert_array_equal(env.action_space.low, task.action_low)
    np.testing.assert_array_equal(env.action_space.high, task.action_high)
    assert env.spec.max_episode_steps == task.max_episode_steps
    assert env.unwrapped.frame_skip == task.frame_skip
    assert env.unwrapped.dt == task.dt
    env.close()


@pytest.mark.parametrize("env_id", known_env_ids())
def test_initial_states_are_gymnasium_resets(env_id):
    """``initial_states(seeds)`` is exactly the state gymnasium's ``reset(seed=s)`` sets."""
    task = get_task(env_id)
    env = gym.make(env_id).unwrapped
    seeds = np.array([0, 1, 123456789])
    qpos, qvel = task.initial_states(seeds)
    for row, seed in enumerate(seeds.tolist()):
        env.reset(seed=seed)
        np.testing.assert_array_equal(qpos[row], env.data.qpos)
        np.testing.assert_array_equal(qvel[row], env.data.qvel)
    assert not np.array_equal(qpos[0], qpos[1])  # the noise really depends on the seed
    env.close()


def _state_after_steps(env_id: str, steps: int = 30):
    """A state mapping of 4 slots after a few random steps, and the actions of the last one."""
    env = make_batched(env_id, 4, backend="cpu", seed=2)
    env.reset()
    rng = np.random.default_rng(1)
    for _ in range(steps):
        actions = rng.uniform(-1, 1, (4, env.act_dim)).astype(np.float32)
        env.step(actions)
    state = {k: np.array(v) for k, v in env._state.items()}
    env.close()
    return env.task, state, actions


@pytest.mark.parametrize("env_id", known_env_ids())
def test_task_functions_agree_on_numpy_and_torch(env_id):
    """The gpu backend reuses these functions on torch tensors: same values as numpy."""
    task, state, actions = _state_after_steps(env_id)
    velocity = np.random.default_rng(0).normal(size=task.position(state).shape)
    torch_state = {k: torch.from_numpy(v) for k, v in state.items()}
    ref = (
        task.observation(state),
        task.reward(state, actions, velocity),
        task.terminated(state),
    )
    out = (
        task.observation(torch_state),
        task.reward(torch_state, torch.from_numpy(actions), torch.from_numpy(velocity)),
        task.terminated(torch_state),
    )
    assert ref[0].shape == (4, task.obs_dim) and ref[1].shape == (4,) and ref[2].dtype == bool
    for r, o in zip(ref, out, strict=True):
        assert isinstance(o, torch.Tensor)
        np.testing.assert_allclose(o.numpy(), r, rtol=1e-6, atol=1e-6)
    # float32 tensors (as a GPU simulator may hold) work too
    obs32 = task.observation({k: v.float() for k, v in torch_state.items()})
    np.testing.assert_allclose(obs32.numpy(), ref[0], rtol=1e-5, atol=1e-5)


def test_array_namespace_rejects_lists():
    from choicebc.envs import array_namespace

    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        array_namespace([1.0, 2.0])


def test_every_task_is_registered_with_gymnasium():
    for env_id in TASKS:
        assert env_id in gym.registry
