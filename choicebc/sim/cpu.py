"""``cpu`` backend: ``mujoco.batch.Batch`` steps N simulations on native threads.

Physics runs in MuJoCo's thread pool with the GIL released; observations, rewards and
terminations are computed in numpy from the batch's bound state arrays by the task's functions
(:mod:`choicebc.envs`). Results are bit-identical to a loop of ``mj_step`` over one MjData per
simulation, hence to gymnasium's envs up to float32 rounding of the observation.

:meth:`CpuBatchedEnv.step_async` (or :meth:`CpuBatchedEnv.step_physics`) and
:meth:`CpuBatchedEnv.step_wait` split a step so the caller can compute, or wait for its turn,
between the physics and the observations; the evaluator and the collector run two half-batches
that way.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import mujoco
import mujoco.batch
import numpy as np

from choicebc.envs import get_task, is_discrete
from choicebc.sim.base import (
    EpisodeSchedule,
    check_actions,
    check_discrete_actions,
    check_num_envs,
)

# warnings after which MuJoCo has reset the simulation (mj_checkPos/Vel/Acc): the state is lost;
# consecutive in mjtWarning, so a slice (a view, no gather) selects them
_BAD_STATE = sorted(
    int(w)
    for w in (
        mujoco.mjtWarning.mjWARN_BADQPOS,
        mujoco.mjtWarning.mjWARN_BADQVEL,
        mujoco.mjtWarning.mjWARN_BADQACC,
    )
)
if _BAD_STATE != list(range(_BAD_STATE[0], _BAD_STATE[-1] + 1)):  # pragma: no cover
    raise ImportError(f"this MuJoCo's bad-state warnings are not consecutive: {_BAD_STATE}")
_UNSTABLE_WARNINGS = slice(_BAD_STATE[0], _BAD_STATE[-1] + 1)


class CpuBatchedEnv:
    """``num_envs`` simulations of one task in a ``mujoco.batch.Batch`` (the :class:`BatchedEnv`).

    Args:
        env_id: task id (see :func:`choicebc.envs.known_env_ids`).
        num_envs: N >= 1.
        seed: env seed; episode ``j`` starts from ``episode_seed(seed, j)``.
        nthread: MuJoCo threads (0: all CPUs).
        schedule: share episode numbering with other envs (the evaluator's two halves); it may
            carry an episode limit, after which finishing slots turn inactive: they are no longer
            stepped, keep their last observation and report ``info["active"] = False``.

    Raises:
        UnknownEnvError: ``env_id`` is not a known task.
        ValueError: ``num_envs < 1``.
    """

    backend = "cpu"

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int = 0,
        *,
        nthread: int = 0,
        schedule: EpisodeSchedule | None = None,
    ) -> None:
        self.task = task = get_task(env_id)
        self.env_id = env_id
        self.num_envs = n = check_num_envs(num_envs)
        self.seed = int(seed)
        self.obs_dim, self.act_dim = task.obs_dim, task.act_dim
        self.action_low, self.action_high = task.action_low, task.action_high
        # Discrete tasks take ids (N,) / (N, 1); the task maps them to the control
        self.n_actions: int | None = task.n_actions if is_discrete(task) else None
        self._model = task.model
        self._dt = task.dt
        self._batch = mujoco.batch.Batch(
            self._model, n, nthread=nthread, persistent=task.needs_rne_post
        )
        self._qpos, self._qvel, self._ctrl = (self._batch.bind(f) for f in ("qpos", "qvel", "ctrl"))
        self._state: dict[str, np.ndarray] = {}
        for name in task.state_fields:
            if name == "cfrc_ext" and task.needs_rne_post:
                # gymnasium's value: mj_rnePostConstraint on the final MjData (see _physics)
                self._state[name] = np.zeros((n, self._model.nbody, 6))
                self._scratch = mujoco.MjData(self._model)
            else:
                self._state[name] = self._batch.bind(name)
        self._shared_schedule = schedule
        self._schedule = schedule
        self._obs = np.zeros((n, self.obs_dim), np.float32)
        self._position = np.zeros((n, task.position(self._state).shape[1]))
        self._returns = np.zeros(n)
        self._lengths = np.zeros(n, np.int64)
        self._episode_index = np.full(n, -1, np.int64)
        self._episode_seed = np.zeros(n, np.int64)
        self._active = np.zeros(n, bool)
        self._active_ids: np.ndarray | None = None  # None: every slot is active
        self._actions = np.zeros((n, self._model.nu), np.float32)  # controls, for the reward
        self._failed = np.zeros(n, bool)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: concurrent.futures.Future | None = None
        self._physics_done = False  # step_physics() ran, step_wait() has not
        self._needs_reset = True

    # ------------------------------------------------------------------ protocol
    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start episodes in every slot; see :meth:`BatchedEnv.reset`.

        With a shared schedule the episodes continue its numbering and ``seed`` must be None.
        """
        self._drain()
        if self._shared_schedule is not None:
            if seed is not None:
                raise ValueError("this env shares an episode schedule: reset it without a seed")
        else:
            if seed is not None:
                self.seed = int(seed)
            self._schedule = EpisodeSchedule(self.seed)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._active[:] = True
        self._active_ids = None
        self._start_episodes(np.arange(self.num_envs))
        self._needs_reset = False
        return self.observe()

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One env-step of every active slot; see :meth:`BatchedEnv.step`."""
        self._submit(actions, run_async=False)
        return self._finish()

    def step_async(self, actions: np.ndarray) -> None:
        """Validate ``actions`` and start the physics on a background thread; returns at once."""
        self._submit(actions, run_async=True)

    def step_physics(self, actions: np.ndarray) -> None:
        """Validate ``actions`` and run the physics on the calling thread; finish with
        :meth:`step_wait` (for a thread of one's own per env: no hand-off to a worker)."""
        self._submit(actions, run_async=False)
        self._physics_done = True

    def wait_physics(self) -> None:
        """Block until the physics started by :meth:`step_async` is done (idempotent)."""
        if self._pending is not None:
            self._pending.result()

    def step_wait(
        self,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Finish the step started by :meth:`step_async` or :meth:`step_physics`: same returns
        as :meth:`step`."""
        if self._physics_done:
            self._physics_done = False
            return self._finish()
        if self._pending is None:
            raise RuntimeError("step_wait() without step_async(): call step_async(actions) first")
        self._pending.result()
        self._pending = None
        return self._finish()

    def take_episodes(self, source: CpuBatchedEnv, count: int) -> int:
        """Move up to ``count`` running episodes of ``source`` into this env's inactive slots.

        Both envs must run the same task, share one episode schedule and be between steps. An
        episode continues bit-identically where it moved: its slot's whole MuJoCo state row
        (every ``mjtState`` component, ``mjSTATE_INTEGRATION`` included), its warning counters
        and its bookkeeping (return, length, episode index and seed, last observation) move with
        it; its old slot turns inactive.
        The evaluator moves half of the slower half's episodes to the faster one when the faster
        has nothing left to run, so that the last episodes do not finish on one core.

        Returns:
            the number of episodes moved (0 if either side has nothing to give or take).

        Raises:
            ValueError: different tasks or schedules.
            RuntimeError: a step is in flight in either env.
        """
        if source.env_id != self.env_id or source._schedule is not self._schedule:
            raise ValueError("take_episodes needs two envs of one task sharing one schedule")
        for env in (self, source):
            if env._pending is not None or env._physics_done or env._needs_reset:
                raise RuntimeError("take_episodes between steps only: finish the step first")
        free = np.flatnonzero(~self._active)
        running = np.flatnonzero(source._active)
        k = max(0, min(int(count), free.size, running.size))
        if not k:
            return 0
        dst, src = free[:k], running[-k:]
        self._batch.state[dst] = source._batch.state[src]
        self._batch.warning[dst] = source._batch.warning[src]
        if self.task.needs_rne_post:
            self._state["cfrc_ext"][dst] = source._state["cfrc_ext"][src]
        for name in (
            "_obs",
            "_position",
            "_returns",
            "_lengths",
            "_episode_index",
            "_episode_seed",
        ):
            getattr(self, name)[dst] = getattr(source, name)[src]
        self._active[dst] = True
        source._active[src] = False
        self._sync_active_ids()
        source._sync_active_ids()
        return k

    def observe(self) -> tuple[np.ndarray, dict[str, Any]]:
        """The current observations and episode bookkeeping, as :meth:`reset` returns them."""
        return self._obs.copy(), {
            "episode_index": self._episode_index.copy(),
            "episode_seed": self._episode_seed.copy(),
            "active": self._active.copy(),
        }

    @property
    def active(self) -> np.ndarray:
        """``(N,) bool``: slots that still run an episode (all, unless a schedule limit hit)."""
        return self._active.copy()

    def close(self) -> None:
        self._drain()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> CpuBatchedEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CpuBatchedEnv({self.env_id!r}, num_envs={self.num_envs}, seed={self.seed})"

    # ------------------------------------------------------------------ internals
    def _drain(self) -> None:
        if self._physics_done:
            self._physics_done = False
            self._needs_reset = True
        if self._pending is not None:
            self._pending.result()
            self._pending = None
            self._needs_reset = True  # a step was abandoned half-way

    def _sync_active_ids(self) -> None:
        """``_active_ids`` from ``_active``: None while every slot is active (the fast path)."""
        self._active_ids = (
            None if self._active.all() else np.flatnonzero(self._active).astype(np.int32)
        )

    def _rows(self) -> np.ndarray | slice:
        return slice(None) if self._active_ids is None else self._active_ids

    def _submit(self, actions: np.ndarray, run_async: bool) -> None:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        if self._pending is not None or self._physics_done:
            raise RuntimeError("a step is in flight: call step_wait() before stepping again")
        if self.n_actions is not None:
            ids = check_discrete_actions(actions, self.num_envs, self.n_actions, self._active_ids)
            if self._active_ids is not None:  # inactive slots may hold any id: map them to 0
                ids = np.where(self._active, ids, 0)
            a = self.task.control(ids)
        else:
            a = check_actions(
                actions, self.num_envs, self.action_low, self.action_high, self._active_ids
            )
        self._actions[:] = a
        self._ctrl[self._rows()] = a[self._rows()]
        if run_async:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"choicebc-{self.env_id}"
                )
            self._pending = self._executor.submit(self._physics)
        else:
            self._physics()

    def _physics(self) -> None:
        """Step the active slots ``frame_skip`` substeps (on the caller's or the worker thread)."""
        ids = self._active_ids
        try:
            self._batch.step(ids, nstep=self.task.frame_skip)
        except mujoco.batch.SimulationError as exc:
            # the failed simulations kept their previous state; the others ran to completion
            self._failed[exc.ids] = True
        if self.task.needs_rne_post:
            cfrc, data = self._state["cfrc_ext"], self._scratch
            for i in range(self.num_envs) if ids is None else ids.tolist():
                self._batch.get_data(i, data)
                mujoco.mj_rnePostConstraint(self._model, data)
                cfrc[i] = data.cfrc_ext

    def _finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        task, n, rows = self.task, self.num_envs, self._rows()
        every = self._active_ids is None
        s = self._state if every else {k: v[rows] for k, v in self._state.items()}
        position = task.position(s)
        velocity = (position - self._position[rows]) / self._dt
        obs = task.observation(s).astype(np.float32)
        reward = np.asarray(task.reward(s, self._actions[rows], velocity), dtype=np.float64)
        terminated = np.asarray(task.terminated(s), dtype=bool)
        unstable = self._unstable(rows, obs, reward)
        if unstable is not None:
            reward[unstable] = 0.0
            terminated[unstable] = False
            obs[unstable] = self._obs[rows][unstable]  # the episode's last finite observation

        self._position[rows] = position
        self._obs[rows] = obs
        self._returns[rows] += reward
        self._lengths[rows] += 1
        final_obs = self._obs.copy()
        episode_return = self._returns.copy()
        episode_length = self._lengths.copy()

        truncated = self._lengths[rows] >= task.max_episode_steps
        if unstable is not None:
            truncated |= unstable
        if every:  # the step's own arrays are the outputs
            out_reward, out_terminated, out_truncated = reward, terminated, truncated
            out_unstable = np.zeros(n, bool) if unstable is None else unstable
        else:  # inactive slots: reward 0, never done
            out_reward, out_terminated = np.zeros(n), np.zeros(n, bool)
            out_truncated, out_unstable = np.zeros(n, bool), np.zeros(n, bool)
            out_reward[rows] = reward
            out_terminated[rows] = terminated
            out_truncated[rows] = truncated
            if unstable is not None:
                out_unstable[rows] = unstable
        done = np.flatnonzero(out_terminated | out_truncated)
        if done.size:
            self._start_episodes(done)
        info = {
            "final_obs": final_obs,
            "episode_return": episode_return,
            "episode_length": episode_length,
            "episode_index": self._episode_index.copy(),
            "episode_seed": self._episode_seed.copy(),
            "unstable": out_unstable,
            "active": self._active.copy(),
        }
        return self._obs.copy(), out_reward, out_terminated, out_truncated, info

    def _unstable(
        self, rows: np.ndarray | slice, obs: np.ndarray, reward: np.ndarray
    ) -> np.ndarray | None:
        """``(rows,) bool`` of the simulations that went unstable this step, None if none did.

        One reduction per check on the common path; a non-finite sum (NaN, inf, or finite
        values that overflow float32 when summed) sends it to the exact per-row test.
        """
        warned = self._batch.warning[rows, _UNSTABLE_WARNINGS, 1]
        if not (
            self._failed.any()
            or warned.any()
            or not np.isfinite(obs.sum())
            or not np.isfinite(reward.sum())
        ):
            return None
        unstable = (
            warned.any(axis=1)
            | self._failed[rows]
            | ~np.isfinite(obs).all(axis=1)
            | ~np.isfinite(reward)
        )
        self._failed[:] = False
        return unstable if unstable.any() else None

    def _start_episodes(self, slots: np.ndarray) -> None:
        """Reset ``slots`` (sorted) to the next episodes of the schedule; the rest go inactive."""
        indices, seeds = self._schedule.start(len(slots))
        started, idle = slots[: len(indices)], slots[len(indices) :]
        if idle.size:
            self._active[idle] = False
            self._sync_active_ids()
        if not started.size:
            return
        ids = started.astype(np.int32)
        qpos, qvel = self.task.initial_states(seeds)
        # as gymnasium's reset: mj_resetData, set qpos/qvel, mj_forward
        self._batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        self._qpos[ids] = qpos
        self._qvel[ids] = qvel
        self._batch.forward(ids)
        if self.task.needs_rne_post:
            self._state["cfrc_ext"][ids] = 0.0  # mj_forward leaves it as mj_resetData did
        s = {k: v[ids] for k, v in self._state.items()}
        self._position[ids] = self.task.position(s)
        self._obs[ids] = self.task.observation(s).astype(np.float32)
        self._returns[ids] = 0.0
        self._lengths[ids] = 0
        self._episode_index[ids] = indices
        self._episode_seed[ids] = seeds
