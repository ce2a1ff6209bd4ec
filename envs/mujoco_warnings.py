"""MuJoCo's warnings as Python warnings: no ``MUJOCO_LOG.TXT`` left in the user's folder.

MuJoCo's default warning handler prints each warning and appends it to ``MUJOCO_LOG.TXT`` in the
current folder. :func:`route_mujoco_warnings`, run when :mod:`choicebc.envs` is imported (unless
a handler is already installed), sends them to :func:`warnings.warn` as :class:`MujocoWarning`
instead — filterable like any Python warning — and drops :data:`IGNORED_WARNINGS`.
"""

from __future__ import annotations

import warnings

import mujoco

IGNORED_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)
"""Message starts that are not shown. MuJoCo 4 deprecates ``settotalmass``, which gymnasium's own
``half_cheetah.xml`` sets: every HalfCheetah model load warned about a file the user cannot
change. MuJoCo still applies it, so the model (and gymnasium's env, loading the same file) is
unchanged."""


class MujocoWarning(RuntimeWarning):
    """A warning MuJoCo raised (an unstable simulation, a model compiler notice, ...)."""


def _warn(message: str) -> None:
    if message.startswith(IGNORED_WARNINGS):
        return
    warnings.warn(f"MuJoCo: {message}", MujocoWarning, stacklevel=2)


def route_mujoco_warnings(force: bool = False) -> bool:
    """Install the handler unless another one is (``force``: replace it). Returns whether it did.

    The handler is process-wide; ``mujoco.set_mju_user_warning(None)`` restores MuJoCo's own.
    """
    if mujoco.get_mju_user_warning() is not None and not force:
        return False
    mujoco.set_mju_user_warning(_warn)
    return True
