"""What a task is to a batched simulator: a model, a reset distribution and pure state functions.

A :class:`MujocoTask` holds no simulation state. Its functions read a *state mapping*
``s: Mapping[str, Array]`` of batched MjData fields (the names in :attr:`MujocoTask.state_fields`,
each ``(N, *field_shape)``, e.g. ``s["qpos"] (N, nq)``) and return batched results. They use only
operators, the methods ``.clip/.sum/.all/.reshape`` and :func:`array_namespace`, so the same code
runs on numpy arrays (the ``cpu`` backend) and on torch tensors (the ``gpu`` backend, any device,
float32 or float64).

The field values must be what a gymnasium ``MujocoEnv`` holds at the same moment:

* after a step: MjData after ``mj_step(model, data, nstep=frame_skip)``, i.e. ``qpos/qvel`` are the
  new state and derived fields (``xpos``, ``site_xpos``, ``qfrc_constraint``) are those of the last
  substep's forward pass (for RK4 models: of its last Runge-Kutta stage);
* ``cfrc_ext`` (tasks with :attr:`MujocoTask.needs_rne_post`): ``mj_rnePostConstraint`` run on
  that final MjData, as gymnasium calls it after every step; after a reset it is all zeros, since
  ``mj_resetData`` clears it and ``mj_forward`` does not compute it;
* after a reset: ``mj_resetData``, then ``qpos/qvel`` from :meth:`MujocoTask.initial_state`, then
  ``mj_forward``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import mujoco
import numpy as np

Array = Any  # a numpy ndarray or a torch Tensor
"""Batched array type of the task functions: ``numpy.ndarray`` or ``torch.Tensor``."""


def array_namespace(x: Array) -> Any:
    """``numpy`` for numpy arrays, ``torch`` for torch tensors.

    The task functions call only ``xp.concatenate(arrays, axis=-1)``, ``xp.sin``, ``xp.cos`` and
    ``xp.isfinite`` on it, which both modules provide with the same signature.
    """
    if isinstance(x, np.ndarray | np.generic):
        return np
    module = type(x).__module__
    if module.startswith("torch"):
        import torch

        return torch
    raise TypeError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")


def gymnasium_asset(xml_file: str) -> str:
    """Absolute path of ``xml_file`` in gymnasium's own MuJoCo assets folder."""
    import gymnasium.envs.mujoco as gym_mujoco

    return os.path.join(os.path.dirname(gym_mujoco.__file__), "assets", xml_file)


class MujocoTask:
    """One MuJoCo task: model, reset distribution, observation, reward and termination.

    Subclasses set the class attributes and override :meth:`observation`, :meth:`reward` and, when
    the task can end early, :meth:`terminated`.

    Attributes:
        env_id: gymnasium id, e.g. ``"HalfCheetah-v5"``.
        xml_path: absolute path of the MJCF model.
        frame_skip: physics steps (``mj_step``) per env-step.
        max_episode_steps: time limit: ``truncated`` is true at this episode length.
        reset_noise_scale: half-width (uniform) or standard deviation (normal) of reset noise.
        qvel_noise: ``"uniform"`` or ``"normal"``: how gymnasium perturbs ``init_qvel``.
        state_fields: MjData fields the state functions read (keys of the state mapping).
        needs_rne_post: the state mapping needs ``cfrc_ext`` from ``mj_rnePostConstraint``.
        obs_dim: observation size.
    """

    env_id: str = ""
    xml_path: str = ""
    frame_skip: int = 1
    max_episode_steps: int = 1000
    reset_noise_scale: float = 0.0
    qvel_noise: str = "uniform"
    state_fields: tuple[str, ...] = ("qpos", "qvel")
    needs_rne_post: bool = False
    obs_dim: int = 0

    # ------------------------------------------------------------------ model
    @functools.cached_property
    def model(self) -> mujoco.MjModel:
        """The compiled model (loaded once; simulators copy it)."""
        return mujoco.MjModel.from_xml_path(self.xml_path)

    @property
    def act_dim(self) -> int:
        return int(self.model.nu)

    @property
    def dt(self) -> float:
        """Seconds per env-step, exactly as gymnasium computes it (``timestep * frame_skip``)."""
        return self.model.opt.timestep * self.frame_skip

    @property
    def action_low(self) -> np.ndarray:
        """``(act_dim,) float32``: the control range as gymnasium's action space."""
        return self.model.actuator_ctrlrange[:, 0].astype(np.float32)

    @property
    def action_high(self) -> np.ndarray:
        """``(act_dim,) float32``."""
        return self.model.actuator_ctrlrange[:, 1].astype(np.float32)

    # ------------------------------------------------------------------ reset
    def initial_state(
        self, rng: np.random.Generator, init_qpos: np.ndarray, init_qvel: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One episode's initial ``qpos (nq,)``, ``qvel (nv,)`` float64, drawn from ``rng``.

        The draws are gymnasium's ``reset_model`` call for call, so an env reset with
        ``seed=s`` starts where this function does with ``np.random.default_rng(s)``.
        """
        scale = self.reset_noise_scale
        qpos = init_qpos + rng.uniform(low=-scale, high=scale, size=init_qpos.shape[0])
        if self.qvel_noise == "normal":
            qvel = init_qvel + scale * rng.standard_normal(init_qvel.shape[0])
        else:
            qvel = init_qvel + rng.uniform(low=-scale, high=scale, size=init_qvel.shape[0])
        return qpos, qvel

    def initial_states(self, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Initial states of the episodes seeded ``seeds (n,)``: ``qpos (n, nq)``, ``qvel (n, nv)``.

        ``init_qpos`` is the model's ``qpos0`` and ``init_qvel`` zero, as in a fresh MjData.
        """
        model = self.model
        init_qpos = np.array(model.qpos0, dtype=np.float64)
        init_qvel = np.zeros(model.nv)
        qpos = np.empty((len(seeds), model.nq))
        qvel = np.empty((len(seeds), model.nv))
        for row, seed in enumerate(np.asarray(seeds).tolist()):
            qpos[row], qvel[row] = self.initial_state(
                np.random.default_rng(int(seed)), init_qpos, init_qvel
            )
        return qpos, qvel

    # ------------------------------------------------------------------ state functions
    def position(self, s: Mapping[str, Array]) -> Array:
        """``(N, k)`` position whose finite difference is the forward velocity (``qpos[:, :1]``)."""
        return s["qpos"][:, :1]

    def observation(self, s: Mapping[str, Array]) -> Array:
        """``(N, obs_dim)`` observation, in the dtype of the state (callers cast to float32)."""
        raise NotImplementedError

    def reward(self, s: Mapping[str, Array], action: Array, velocity: Array) -> Array:
        """``(N,)`` reward of the step that led to ``s``.

        Args:
            s: state mapping after the step.
            action: ``(N, act_dim)`` the actions applied (float32, inside the action box).
            velocity: ``(N, k)`` ``(position(after) - position(before)) / dt``.
        """
        raise NotImplementedError

    def terminated(self, s: Mapping[str, Array]) -> Array:
        """``(N,)`` bool: the episode ended in a terminal state (default: never)."""
        return s["qpos"][:, 0] > float("inf")  # all False, in the namespace of the state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_id!r})"


def control_cost(weight: float, action: Array) -> Array:
    """``weight * sum(action**2)`` per row, in the action's dtype as gymnasium computes it."""
    return weight * (action * action).sum(axis=-1)
