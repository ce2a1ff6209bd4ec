"""MuJoCo tasks for batched simulation (installed as ``choicebc.envs``).

Each task is a :class:`~choicebc.envs.task.MujocoTask`: gymnasium's own model XML and batched,
backend-neutral (numpy or torch) observation / reward / termination / reset functions. Importing
this package registers ``choicebc/PointReach-v0`` and ``choicebc/PointReachDiscrete-v0`` with
gymnasium.

Most tasks have a continuous (``Box``) action. A *discrete-action* task
(:data:`DISCRETE_TASKS`, :func:`is_discrete`) has an integer ``n_actions`` attribute, a
``control(ids) -> (N, nu)`` map, ``act_dim == 1`` and the id range ``[0, n_actions - 1]`` as its
"box"; simulators take ids ``(N,)`` or ``(N, 1)``. :func:`known_env_ids` lists the Box tasks
(what the locomotion tooling iterates); ``known_env_ids(discrete=True)`` adds the discrete ones.

    >>> from choicebc.envs import get_task
    >>> task = get_task("Hopper-v5")
    >>> task.obs_dim, task.act_dim, task.frame_skip
    (11, 3, 4)
"""

from __future__ import annotations

import difflib

from .locomotion import Ant, HalfCheetah, Hopper, InvertedDoublePendulum, Swimmer, Walker2d
from .mujoco_warnings import MujocoWarning, route_mujoco_warnings
from .point_reach import ENV_ID as POINT_REACH_ID
from .point_reach import TASK as POINT_REACH
from .point_reach import PointReachExpert
from .point_reach_discrete import ENV_ID as POINT_REACH_DISCRETE_ID
from .point_reach_discrete import TASK as POINT_REACH_DISCRETE
from .point_reach_discrete import PointReachDiscreteExpert
from .task import MujocoTask, array_namespace

__all__ = [
    "DISCRETE_TASKS",
    "POINT_REACH_DISCRETE_ID",
    "POINT_REACH_ID",
    "TASKS",
    "MujocoTask",
    "MujocoWarning",
    "PointReachDiscreteExpert",
    "PointReachExpert",
    "UnknownEnvError",
    "array_namespace",
    "get_task",
    "is_discrete",
    "known_env_ids",
]

route_mujoco_warnings()  # no MUJOCO_LOG.TXT in the user's folder (see .mujoco_warnings)

TASKS: dict[str, MujocoTask] = {
    task.env_id: task
    for task in (
        HalfCheetah(),
        Hopper(),
        Walker2d(),
        Ant(),
        Swimmer(),
        InvertedDoublePendulum(),
        POINT_REACH,
    )
}
"""Tasks with a continuous (Box) action, by env id."""

DISCRETE_TASKS: dict[str, MujocoTask] = {POINT_REACH_DISCRETE.env_id: POINT_REACH_DISCRETE}
"""Tasks with a ``Discrete(n_actions)`` action, by env id."""


class UnknownEnvError(ValueError):
    """An env id that no batched task implements."""


def known_env_ids(discrete: bool = False) -> list[str]:
    """Env ids with a batched Box-action task, in a stable order (``discrete=True``: then the
    discrete-action ones too)."""
    return list(TASKS) + (list(DISCRETE_TASKS) if discrete else [])


def is_discrete(task: MujocoTask) -> bool:
    """Whether ``task``'s action is ``Discrete(task.n_actions)`` (an integer id per step)."""
    return isinstance(getattr(task, "n_actions", None), int)


def get_task(env_id: str) -> MujocoTask:
    """The task registered as ``env_id`` (Box or discrete action).

    Raises:
        UnknownEnvError: the message lists the known ids and the closest match.
    """
    everything = {**TASKS, **DISCRETE_TASKS}
    try:
        return everything[env_id]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(env_id), everything, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownEnvError(
            f"unknown env id {env_id!r}.{hint} Known ids: {', '.join(everything)}"
        ) from None


def _register_with_gymnasium() -> None:
    import gymnasium

    modules = {POINT_REACH_ID: "point_reach", POINT_REACH_DISCRETE_ID: "point_reach_discrete"}
    for task in (POINT_REACH, POINT_REACH_DISCRETE):
        module = modules[task.env_id]
        if task.env_id not in gymnasium.registry:
            gymnasium.register(
                id=task.env_id,
                entry_point=f"choicebc.envs.{module}:make_gym_env",
                max_episode_steps=task.max_episode_steps,
            )


_register_with_gymnasium()
