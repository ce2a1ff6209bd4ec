"""The batched-environment protocol every simulation backend implements.

Autoreset rule (same-step, as SB3's VecEnv): when slot ``i`` ends an episode in ``step``, the
returned ``obs[i]`` is already the first observation of its next episode; the last observation
of the finished episode is in ``info["final_obs"][i]``. Episode ``j`` of an env seeded ``s``
(counted in the order episodes are started: all slots at ``reset``, then slots in index order
as they finish) always starts from the state that :func:`episode_seed` ``(s, j)`` gives, so
results do not depend on ``num_envs``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


def episode_seed(env_seed: int, episode_index: int) -> int:
    """Seed of the ``episode_index``-th episode of an env seeded ``env_seed`` (a 32-bit int)."""
    seq = np.random.SeedSequence([int(env_seed) & 0xFFFFFFFF, int(episode_index)])
    return int(seq.generate_state(1, dtype=np.uint32)[0])


@runtime_checkable
class BatchedEnv(Protocol):
    """``num_envs`` copies of one task stepped together.

    Attributes:
        env_id: task id, e.g. ``"HalfCheetah-v5"``.
        num_envs: N, the number of slots.
        obs_dim: size of one observation.
        act_dim: size of one action.
        action_low, action_high: ``(act_dim,) float32`` action box.
    """

    env_id: str
    num_envs: int
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start episodes ``0 .. N-1`` in every slot.

        Returns:
            ``obs (N, obs_dim) float32`` and ``info`` with ``"episode_seed" (N,) int64`` and
            ``"episode_index" (N,) int64``.
        """
        ...

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every slot one env-step with ``actions (N, act_dim)`` (clipped to the box).

        Returns:
            ``obs (N, obs_dim) float32``, ``reward (N,) float64``, ``terminated (N,) bool``,
            ``truncated (N,) bool``, and ``info`` with (at least)
            ``"final_obs" (N, obs_dim) float32`` (valid where an episode ended),
            ``"episode_return" (N,) float64`` and ``"episode_length" (N,) int64`` (valid where an
            episode ended), ``"episode_index"``/``"episode_seed" (N,) int64`` of the episode each
            slot is *now* in, and ``"unstable" (N,) bool`` (slots reset after a NaN/warning).
        """
        ...

    def close(self) -> None:
        """Release native resources."""
        ...
