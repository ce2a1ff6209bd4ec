"""The batched-environment protocol every simulation backend implements.

Autoreset rule (same-step, as SB3's VecEnv): when slot ``i`` ends an episode in ``step``, the
returned ``obs[i]`` is already the first observation of its next episode; the last observation
of the finished episode is in ``info["final_obs"][i]``. Episode ``j`` of an env seeded ``s``
(counted in the order episodes are started: all slots at ``reset``, then slots in index order
as they finish) always starts from the state that :func:`episode_seed` ``(s, j)`` gives, so
results do not depend on ``num_envs``. :class:`EpisodeSchedule` implements that numbering; every
backend uses it.

An episode ends when the task terminates it (``terminated``), at the task's time limit
(``truncated``), or when the simulation goes unstable (MuJoCo's bad-qpos/qvel/qacc warning, a NaN
state or a MuJoCo error): then ``truncated`` and ``info["unstable"]`` are true, the step's reward
is 0 and ``final_obs`` is the episode's last finite observation, so no NaN ever reaches the caller.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


def episode_seed(env_seed: int, episode_index: int) -> int:
    """Seed of the ``episode_index``-th episode of an env seeded ``env_seed`` (a 32-bit int)."""
    seq = np.random.SeedSequence([int(env_seed) & 0xFFFFFFFF, int(episode_index)])
    return int(seq.generate_state(1, dtype=np.uint32)[0])


class ActionError(ValueError):
    """Actions of the wrong shape, or with NaN/inf entries."""


class BackendUnavailableError(RuntimeError):
    """The requested simulation backend cannot run here (e.g. ``gpu`` without CUDA)."""


class EpisodeSchedule:
    """Hands out episode indices ``0, 1, 2, ...`` and their seeds in start order.

    Backends call :meth:`start` at reset (for all slots) and after each step (for the slots that
    finished, in slot order). Two envs that share one schedule number their episodes as one env
    would: this is how the evaluator runs two half-batches as a single env.

    Args:
        env_seed: the env's seed ``s``; episode ``j`` gets ``episode_seed(s, j)``.
        limit: start at most this many episodes in total (``None``: unlimited); a slot that
            finishes once the limit is reached gets no new episode (it becomes inactive).
    """

    def __init__(self, env_seed: int, limit: int | None = None) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        self.env_seed = int(env_seed)
        self.limit = limit
        self.started = 0

    @property
    def remaining(self) -> int | None:
        """Episodes that may still start (``None``: unlimited)."""
        return None if self.limit is None else self.limit - self.started

    def start(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Start up to ``n`` episodes: their ``indices (k,) int64`` and ``seeds (k,) int64``.

        ``k == n`` unless the limit cuts it short.
        """
        k = n if self.limit is None else max(0, min(n, self.limit - self.started))
        indices = np.arange(self.started, self.started + k, dtype=np.int64)
        self.started += k
        seeds = np.array([episode_seed(self.env_seed, j) for j in indices], dtype=np.int64)
        return indices, seeds


def check_count(name: str, value: Any) -> int:
    """``value`` as an int >= 1 (a count: ``num_envs``, ``episodes``, ``transitions``), or a
    ``ValueError`` that names ``name`` and says what to pass."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_num_envs(num_envs: Any) -> int:
    """``num_envs`` as an int >= 1, or a ``ValueError`` that says what to pass."""
    return check_count("num_envs", num_envs)


def check_actions(
    actions: Any, num_envs: int, low: np.ndarray, high: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """Validate ``actions (N, act_dim)`` and clip them to ``[low, high]`` as float32.

    Args:
        rows: only these rows must be finite (the others belong to inactive slots).

    Raises:
        ActionError: wrong shape, or NaN/inf entries (the message names the first bad slot).
    """
    act_dim = low.shape[0]
    try:
        a = np.asarray(actions, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ActionError(f"actions must be a numeric array (N, {act_dim}): {exc}") from None
    if a.shape != (num_envs, act_dim):
        hint = " (one row per slot)" if a.ndim == 2 and a.shape[1] == act_dim else ""
        raise ActionError(
            f"actions must have shape ({num_envs}, {act_dim}), got {a.shape}{hint}; "
            "a policy's output for obs (N, obs_dim) must be (N, act_dim)"
        )
    checked = a if rows is None else a[rows]
    # one reduction on the common path; a non-finite sum (NaN, inf, or an overflow of large
    # finite values) is resolved row by row
    finite = np.isfinite(checked.sum()) or np.isfinite(checked).all(axis=1)
    if not np.all(finite):
        bad = int(np.flatnonzero(~finite)[0] if rows is None else rows[~finite][0])
        raise ActionError(
            f"actions contain NaN or inf (slot {bad}: {a[bad].tolist()}); "
            "check the policy's inputs and weights"
        )
    return np.clip(a, low, high)


def check_discrete_actions(
    actions: Any, num_envs: int, n_actions: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """Validate integer action ids ``(N,)`` or ``(N, 1)`` of a ``Discrete(n_actions)`` task.

    Float arrays are refused even when integral: a continuous policy run on a discrete task
    must fail loudly, not have its actions truncated to ids.

    Args:
        rows: only these rows must be valid ids (the others belong to inactive slots).

    Returns:
        ``(N,) int64`` ids.

    Raises:
        ActionError: wrong shape, a non-integer dtype, or an id outside ``[0, n_actions)``.
    """
    a = np.asarray(actions)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.shape != (num_envs,):
        raise ActionError(
            f"actions of a Discrete({n_actions}) task must be integer ids of shape ({num_envs},) "
            f"or ({num_envs}, 1), got {a.shape}"
        )
    if not np.issubdtype(a.dtype, np.integer):
        raise ActionError(
            f"actions of a Discrete({n_actions}) task must be integer ids in [0, {n_actions}), "
            f"got dtype {a.dtype}: is this a continuous-action policy? Train one on this task's "
            "demos (its act() returns ids)"
        )
    checked = a if rows is None else a[rows]
    bad = (checked < 0) | (checked >= n_actions)
    if bad.any():
        slot = int(np.flatnonzero(bad)[0] if rows is None else rows[bad][0])
        raise ActionError(
            f"action id {int(a[slot])} in slot {slot} is outside [0, {n_actions}) of this "
            f"Discrete({n_actions}) task"
        )
    return a.astype(np.int64)


@runtime_checkable
class BatchedEnv(Protocol):
    """``num_envs`` copies of one task stepped together.

    Attributes:
        env_id: task id, e.g. ``"HalfCheetah-v5"``.
        num_envs: N, the number of slots.
        obs_dim: size of one observation.
        act_dim: size of one action.
        action_low, action_high: ``(act_dim,) float32`` action box.
        n_actions: ``None`` for a Box action; ``n`` for a ``Discrete(n)`` task (cpu and gym
            backends), whose ``step`` takes integer ids ``(N,)`` or ``(N, 1)`` (floats are
            refused, see :func:`check_discrete_actions`), ``act_dim == 1`` and the box is the
            id range ``[0, n - 1]``.
    """

    env_id: str
    num_envs: int
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start episodes ``0 .. N-1`` in every slot (``seed=None``: the env's own seed).

        Returns:
            ``obs (N, obs_dim) float32`` and ``info`` with ``"episode_seed" (N,) int64`` and
            ``"episode_index" (N,) int64``.
        """
        ...

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every slot one env-step with ``actions (N, act_dim)`` (clipped to the box).

        Actions are cast to float32 (the action space's dtype) before the reward uses them.

        Returns:
            ``obs (N, obs_dim) float32``, ``reward (N,) float64``, ``terminated (N,) bool``,
            ``truncated (N,) bool``, and ``info`` with (at least)
            ``"final_obs" (N, obs_dim) float32`` (the observation this step reached, before any
            reset: equal to ``obs`` where no episode ended),
            ``"episode_return" (N,) float64`` and ``"episode_length" (N,) int64`` (of the episode
            each slot was in during this step, up to and including it: the finished episode's
            totals where one ended), ``"episode_index"``/``"episode_seed" (N,) int64`` of the
            episode each slot is *now* in, and ``"unstable" (N,) bool`` (slots reset after a
            NaN state or a MuJoCo instability warning).

        Raises:
            ActionError: actions of the wrong shape or with NaN/inf entries.
        """
        ...

    def close(self) -> None:
        """Release native resources."""
        ...
