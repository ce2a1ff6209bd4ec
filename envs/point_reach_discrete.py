"""``choicebc/PointReachDiscrete-v0``: PointReach with a discrete action, 8 headings plus "stay".

The same point mass, servos, goal, reward, termination and reset as ``choicebc/PointReach-v0``
(same MJCF, ``envs/assets/point_reach.xml``); only the action differs:

* action: ``gymnasium.spaces.Discrete(9)``, an integer id. ``0`` is *stay* (command zero
  velocity); ``k = 1 .. 8`` is the heading ``(k - 1) * 45`` degrees counter-clockwise from
  ``+x`` at :attr:`PointReachDiscrete.speed` m/s. :meth:`PointReachDiscrete.control` maps ids to
  the servos' commanded velocities ``(N, 2)``.
* the *opposite* of an action (:attr:`PointReachDiscrete.opposite_actions`) is the id whose
  control is minus its control: heading ``k`` <-> ``k + 4`` (mod 8), stay <-> stay. It is the
  discrete analogue of ``-a``, which the ``flipped`` adversary uses.

Batched simulators pass ids ``(N,)`` or ``(N, 1)``; the recorded action (``DemoSet.actions``) is
``(M, 1) int64``, so :attr:`PointReachDiscrete.act_dim` is 1 and the action "box" is the id range
``[0, n_actions - 1]``.

:class:`PointReachDiscreteExpert` is the analytic expert: the heading closest to the goal
direction (stay once inside the success radius).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .point_reach import PointReach

ENV_ID = "choicebc/PointReachDiscrete-v0"
STAY = 0
N_HEADINGS = 8


class PointReachDiscrete(PointReach):
    """Batched state functions of ``choicebc/PointReachDiscrete-v0`` (PointReach's, plus the
    id -> control map).

    Attributes:
        n_actions: 9 (stay + 8 headings); the action space is ``Discrete(n_actions)``.
        speed: commanded speed of a heading, m/s (the continuous task's per-axis limit).
    """

    env_id = ENV_ID
    n_actions = 1 + N_HEADINGS
    speed = 1.0

    @property
    def act_dim(self) -> int:
        """1: one integer action id per step (the column count of recorded actions)."""
        return 1

    @property
    def control_dim(self) -> int:
        """Size of the control the ids map to (the model's actuators: 2)."""
        return int(self.model.nu)

    @property
    def action_low(self) -> np.ndarray:
        """``(1,) float32``: the smallest action id, 0."""
        return np.zeros(1, np.float32)

    @property
    def action_high(self) -> np.ndarray:
        """``(1,) float32``: the largest action id, ``n_actions - 1``."""
        return np.full(1, self.n_actions - 1, np.float32)

    @property
    def controls(self) -> np.ndarray:
        """``(n_actions, 2) float32``: row ``k`` is action ``k``'s commanded velocity (m/s)."""
        angles = np.arange(N_HEADINGS) * (2.0 * math.pi / N_HEADINGS)
        table = np.zeros((self.n_actions, 2))
        table[1:, 0] = self.speed * np.cos(angles)
        table[1:, 1] = self.speed * np.sin(angles)
        table[np.abs(table) < 1e-12] = 0.0  # cos(90 deg) is 6e-17 in floats: make axes exact
        return table.astype(np.float32)

    @property
    def opposite_actions(self) -> np.ndarray:
        """``(n_actions,) int64``: the id whose control is minus action ``k``'s control."""
        opposite = np.empty(self.n_actions, np.int64)
        opposite[STAY] = STAY
        opposite[1:] = 1 + (np.arange(N_HEADINGS) + N_HEADINGS // 2) % N_HEADINGS
        return opposite

    def control(self, actions: np.ndarray) -> np.ndarray:
        """``(N,) int`` valid action ids -> ``(N, 2) float32`` commanded velocities."""
        return self.controls[np.asarray(actions, dtype=np.int64).reshape(-1)]


TASK = PointReachDiscrete()


class PointReachDiscreteExpert:
    """Analytic expert: the heading closest to the goal direction, batched; stay at the goal.

    At 1 m/s a step moves the point 5 cm (the success radius) at most 22.5 degrees off the goal
    direction, so the distance shrinks every step until the goal is reached; every start in
    ``[-0.9, 0.9]^2`` reaches it well within the 200-step limit (``tests/test_discrete_bc.py``).
    """

    env_id = ENV_ID
    obs_dim = 2
    act_dim = 1
    n_actions = TASK.n_actions

    def __init__(self) -> None:
        self._goal = np.asarray(TASK.goal, dtype=np.float64)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """``obs (N, 2)`` positions -> ``(N,) int64`` action ids."""
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim != 2 or obs.shape[1] != 2:
            raise ValueError(
                f"PointReachDiscreteExpert expects observations (N, 2), got {obs.shape}"
            )
        error = self._goal - obs
        angle = np.arctan2(error[:, 1], error[:, 0])
        sector = np.rint(angle / (2.0 * math.pi / N_HEADINGS)).astype(np.int64) % N_HEADINGS
        actions = 1 + sector
        at_goal = np.hypot(error[:, 0], error[:, 1]) < TASK.success_radius
        actions[at_goal] = STAY
        return actions

    @property
    def description(self) -> str:
        return "PointReachDiscreteExpert(closest heading)"

    def __repr__(self) -> str:
        return "PointReachDiscreteExpert()"


def _gym_env_class() -> type:
    """The gymnasium env class: PointReach's, with integer action ids turned into controls."""
    from gymnasium.spaces import Discrete

    from .point_reach import _gym_env_class as continuous_env_class

    class PointReachDiscreteEnv(continuous_env_class()):
        """gymnasium env of ``choicebc/PointReachDiscrete-v0``, with :data:`TASK`'s functions."""

        task = TASK

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.action_space = Discrete(TASK.n_actions)

        def _control(self, action: Any) -> np.ndarray:
            a = np.asarray(action)
            if a.size != 1 or not np.issubdtype(a.dtype, np.integer):
                raise ValueError(
                    f"{ENV_ID} takes one integer action id in [0, {TASK.n_actions}), got "
                    f"{action!r} (dtype {a.dtype})"
                )
            action_id = int(a.reshape(-1)[0])
            if not 0 <= action_id < TASK.n_actions:
                raise ValueError(
                    f"{ENV_ID} action id must be in [0, {TASK.n_actions}), got {action_id}"
                )
            return TASK.control(a.reshape(1))

    return PointReachDiscreteEnv


def make_gym_env(**kwargs: Any):
    """gymnasium entry point of ``choicebc/PointReachDiscrete-v0``."""
    return _gym_env_class()(**kwargs)
