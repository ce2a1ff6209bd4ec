"""``choicebc/PointReach-v0``: a planar point mass that must reach a fixed goal.

Its state is a 2-D position, so anything a policy computes per state (actions, ChoiceNet's
correlations rho_k(s), mixture weights) is an image over the square ``[-1, 1]^2``.

* observation ``(2,)``: the point's position ``(x, y)`` (``qpos``);
* action ``(2,)`` in ``[-1, 1]^2``: commanded velocity, tracked by velocity servos;
* reward: minus the distance to the goal after the step;
* terminated: within ``success_radius`` of the goal; truncated after 200 steps;
* reset: position uniform in ``[-0.9, 0.9]^2``, at rest.

:class:`PointReachExpert` is the analytic expert: a saturated proportional law on the position
error; with the servos' velocity feedback it is a PD controller on the point.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .task import Array, MujocoTask

ENV_ID = "choicebc/PointReach-v0"


class PointReach(MujocoTask):
    """Batched state functions of ``choicebc/PointReach-v0`` (goal read from the model)."""

    env_id = ENV_ID
    xml_path = os.path.join(os.path.dirname(__file__), "assets", "point_reach.xml")
    frame_skip = 5
    max_episode_steps = 200
    obs_dim = 2
    success_radius = 0.05
    start_range = 0.9

    @property
    def goal(self) -> tuple[float, float]:
        """Goal ``(x, y)`` in metres: the ``goal`` site of the model."""
        x, y = self.model.site("goal").pos[:2]
        return float(x), float(y)

    def initial_state(
        self, rng: np.random.Generator, init_qpos: np.ndarray, init_qvel: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        qpos = rng.uniform(low=-self.start_range, high=self.start_range, size=init_qpos.shape[0])
        return qpos, np.zeros_like(init_qvel)

    def position(self, s: Mapping[str, Array]) -> Array:
        return s["qpos"][:, :2]

    def observation(self, s: Mapping[str, Array]) -> Array:
        return s["qpos"][:, :2]

    def distance(self, s: Mapping[str, Array]) -> Array:
        """``(N,)`` Euclidean distance from the point to the goal."""
        gx, gy = self.goal
        dx, dy = s["qpos"][:, 0] - gx, s["qpos"][:, 1] - gy
        return (dx * dx + dy * dy) ** 0.5

    def reward(self, s: Mapping[str, Array], action: Array, velocity: Array) -> Array:
        return -self.distance(s)

    def terminated(self, s: Mapping[str, Array]) -> Array:
        return self.distance(s) < self.success_radius


TASK = PointReach()


class PointReachExpert:
    """Analytic expert: ``clip(gain * (goal - position), -1, 1)``, batched.

    With ``gain = 4`` the commanded speed saturates at 1 m/s far away and the error shrinks by
    ~20% per env-step near the goal; every start in ``[-0.9, 0.9]^2`` reaches the goal in well
    under the 200-step limit (see ``tests/test_envs_point_reach.py``).

    Args:
        gain: proportional gain, 1/s.
    """

    env_id = ENV_ID
    obs_dim = 2
    act_dim = 2

    def __init__(self, gain: float = 4.0) -> None:
        if not gain > 0:
            raise ValueError(f"gain must be positive, got {gain}")
        self.gain = float(gain)
        self._goal = np.asarray(TASK.goal, dtype=np.float32)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """``obs (N, 2)`` positions -> ``(N, 2) float32`` commanded velocities."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != 2:
            raise ValueError(f"PointReachExpert expects observations (N, 2), got {obs.shape}")
        return np.clip(self.gain * (self._goal - obs), -1.0, 1.0).astype(np.float32)

    def __repr__(self) -> str:
        return f"PointReachExpert(gain={self.gain})"


def _gym_env_class() -> type:
    """The gymnasium env class (built lazily: gymnasium's MuJoCo module is heavy to import).

    The class reads its task from ``task`` and turns an action into the control with
    :meth:`_control`, so the discrete variant only overrides those two.
    """
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
    from gymnasium.spaces import Box

    class PointReachEnv(MujocoEnv):
        """gymnasium env of ``choicebc/PointReach-v0``, computed with :data:`TASK`'s functions."""

        metadata = {"render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"]}
        task = TASK

        def __init__(self, **kwargs: Any) -> None:
            task = self.task
            MujocoEnv.__init__(
                self,
                task.xml_path,
                task.frame_skip,
                observation_space=Box(-np.inf, np.inf, shape=(task.obs_dim,), dtype=np.float64),
                **kwargs,
            )
            self.metadata = {**self.metadata, "render_fps": int(np.round(1.0 / self.dt))}

        def _state(self) -> dict[str, np.ndarray]:
            return {"qpos": self.data.qpos[None], "qvel": self.data.qvel[None]}

        def _control(self, action: Any) -> np.ndarray:
            """``(1, nu)`` control of one action."""
            return np.asarray(action)[None]

        def step(self, action: Any):
            task, control = self.task, self._control(action)
            before = task.position(self._state()).copy()
            self.do_simulation(control[0], self.frame_skip)
            s = self._state()
            velocity = (task.position(s) - before) / self.dt
            reward = float(task.reward(s, control, velocity)[0])
            terminated = bool(task.terminated(s)[0])
            info = {"distance": float(task.distance(s)[0])}
            return task.observation(s)[0].copy(), reward, terminated, False, info

        def reset_model(self) -> np.ndarray:
            qpos, qvel = self.task.initial_state(self.np_random, self.init_qpos, self.init_qvel)
            self.set_state(qpos, qvel)
            return self.task.observation(self._state())[0].copy()

    return PointReachEnv


def make_gym_env(**kwargs: Any):
    """gymnasium entry point of ``choicebc/PointReach-v0``."""
    return _gym_env_class()(**kwargs)
