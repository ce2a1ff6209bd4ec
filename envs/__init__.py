"""MuJoCo tasks for batched simulation (installed as ``choicebc.envs``).

Each task is a :class:`~choicebc.envs.task.MujocoTask`: gymnasium's own model XML and batched,
backend-neutral (numpy or torch) observation / reward / termination / reset functions. Importing
this package registers ``choicebc/PointReach-v0`` with gymnasium.

    >>> from choicebc.envs import get_task
    >>> task = get_task("Hopper-v5")
    >>> task.obs_dim, task.act_dim, task.frame_skip
    (11, 3, 4)
"""

from __future__ import annotations

import difflib

from .locomotion import Ant, HalfCheetah, Hopper, InvertedDoublePendulum, Swimmer, Walker2d
from .point_reach import ENV_ID as POINT_REACH_ID
from .point_reach import TASK as POINT_REACH
from .point_reach import PointReachExpert
from .task import MujocoTask, array_namespace

__all__ = [
    "POINT_REACH_ID",
    "TASKS",
    "MujocoTask",
    "PointReachExpert",
    "UnknownEnvError",
    "array_namespace",
    "get_task",
    "known_env_ids",
]

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


class UnknownEnvError(ValueError):
    """An env id that no batched task implements."""


def known_env_ids() -> list[str]:
    """Env ids with a batched task, in a stable order."""
    return list(TASKS)


def get_task(env_id: str) -> MujocoTask:
    """The task registered as ``env_id``.

    Raises:
        UnknownEnvError: the message lists the known ids and the closest match.
    """
    try:
        return TASKS[env_id]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(env_id), TASKS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownEnvError(
            f"unknown env id {env_id!r}.{hint} Known ids: {', '.join(TASKS)}"
        ) from None


def _register_with_gymnasium() -> None:
    import gymnasium

    if POINT_REACH_ID not in gymnasium.registry:
        gymnasium.register(
            id=POINT_REACH_ID,
            entry_point="choicebc.envs.point_reach:make_gym_env",
            max_episode_steps=POINT_REACH.max_episode_steps,
        )


_register_with_gymnasium()
