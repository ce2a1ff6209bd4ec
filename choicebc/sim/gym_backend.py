"""``gym`` backend: gymnasium's ``SyncVectorEnv`` of the real gymnasium envs — the reference.

It follows the :class:`BatchedEnv` protocol exactly (same-step autoreset, episode ``j`` reset
with ``seed=episode_seed(s, j)``, actions clipped to the box and cast to float32), so for the same
seed and actions it produces the same episodes as the ``cpu`` backend. Slow: one Python call per
env per step. Use it to check other backends and as the benchmark baseline.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from choicebc.envs import get_task, is_discrete
from choicebc.sim.base import (
    EpisodeSchedule,
    check_actions,
    check_discrete_actions,
    check_num_envs,
)


class GymBatchedEnv:
    """``num_envs`` gymnasium envs (``gym.make(env_id)``) behind the :class:`BatchedEnv` protocol.

    Args:
        env_id: a task id known to :mod:`choicebc.envs`.
        num_envs: N >= 1.
        seed: env seed; episode ``j`` resets with ``seed=episode_seed(seed, j)``.

    Raises:
        UnknownEnvError: unknown ``env_id``.
        ValueError: ``num_envs < 1``.
    """

    backend = "gym"

    def __init__(self, env_id: str, num_envs: int, seed: int = 0) -> None:
        task = get_task(env_id)
        self.env_id = env_id
        self.num_envs = n = check_num_envs(num_envs)
        self.seed = int(seed)
        self.obs_dim, self.act_dim = task.obs_dim, task.act_dim
        self.max_episode_steps = task.max_episode_steps
        self._env = SyncVectorEnv(
            [lambda: gym.make(env_id) for _ in range(n)], autoreset_mode=AutoresetMode.DISABLED
        )
        space = self._env.single_action_space
        self.n_actions: int | None = task.n_actions if is_discrete(task) else None
        if self.n_actions is not None:  # Discrete(n): the "box" is the id range, as the task's
            self.action_low, self.action_high = task.action_low, task.action_high
        else:
            self.action_low = space.low.astype(np.float32)
            self.action_high = space.high.astype(np.float32)
        self._schedule = EpisodeSchedule(self.seed)
        self._obs = np.zeros((n, self.obs_dim), np.float32)
        self._returns = np.zeros(n)
        self._lengths = np.zeros(n, np.int64)
        self._episode_index = np.zeros(n, np.int64)
        self._episode_seed = np.zeros(n, np.int64)
        self._started = False

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self.seed = int(seed)
        self._schedule = EpisodeSchedule(self.seed)
        self._start_episodes(np.ones(self.num_envs, bool))
        self._started = True
        return self._obs.copy(), {
            "episode_index": self._episode_index.copy(),
            "episode_seed": self._episode_seed.copy(),
        }

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self.n_actions is not None:
            a = check_discrete_actions(actions, self.num_envs, self.n_actions)
        else:
            a = check_actions(actions, self.num_envs, self.action_low, self.action_high)
        obs, reward, terminated, truncated, _ = self._env.step(a)
        obs = np.asarray(obs, dtype=np.float32)
        reward = np.asarray(reward, dtype=np.float64)
        terminated = np.asarray(terminated, dtype=bool).copy()
        truncated = np.asarray(truncated, dtype=bool).copy()
        unstable = ~np.isfinite(obs).all(axis=1) | ~np.isfinite(reward)
        if unstable.any():
            reward[unstable] = 0.0
            terminated[unstable] = False
            truncated[unstable] = True
            obs[unstable] = self._obs[unstable]
        self._returns += reward
        self._lengths += 1
        self._obs[:] = obs
        info: dict[str, Any] = {
            "final_obs": obs.copy(),
            "episode_return": self._returns.copy(),
            "episode_length": self._lengths.copy(),
            "unstable": unstable,
        }
        done = terminated | truncated
        if done.any():
            self._start_episodes(done)
        info["episode_index"] = self._episode_index.copy()
        info["episode_seed"] = self._episode_seed.copy()
        return self._obs.copy(), reward, terminated, truncated, info

    def close(self) -> None:
        self._env.close()

    def __repr__(self) -> str:
        return f"GymBatchedEnv({self.env_id!r}, num_envs={self.num_envs}, seed={self.seed})"

    def _start_episodes(self, mask: np.ndarray) -> None:
        slots = np.flatnonzero(mask)
        indices, seeds = self._schedule.start(len(slots))
        seed_list: list[int | None] = [None] * self.num_envs
        for slot, s in zip(slots.tolist(), seeds.tolist(), strict=True):
            seed_list[slot] = s
        obs, _ = self._env.reset(seed=seed_list, options={"reset_mask": mask.copy()})
        self._obs[slots] = np.asarray(obs, dtype=np.float32)[slots]
        self._returns[slots] = 0.0
        self._lengths[slots] = 0
        self._episode_index[slots] = indices
        self._episode_seed[slots] = seeds
