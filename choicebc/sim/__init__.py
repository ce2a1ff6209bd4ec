"""Batched simulation: one :class:`BatchedEnv` protocol, three backends.

* ``cpu`` (default): ``mujoco.batch.Batch``, N simulations on native threads
  (:class:`~choicebc.sim.cpu.CpuBatchedEnv`);
* ``gpu``: MuJoCo on CUDA (``choicebc.sim.gpu``, ``pip install choicebc[gpu]``), imported only
  when requested or auto-selected;
* ``gym``: gymnasium's ``SyncVectorEnv`` of the real envs, the reference
  (:class:`~choicebc.sim.gym_backend.GymBatchedEnv`).

    >>> env = make_batched("HalfCheetah-v5", num_envs=256, backend="cpu", seed=0)
    >>> obs, info = env.reset()
    >>> obs, reward, terminated, truncated, info = env.step(actions)
"""

from __future__ import annotations

from choicebc.envs import UnknownEnvError, get_task, known_env_ids
from choicebc.sim.base import (
    ActionError,
    BackendUnavailableError,
    BatchedEnv,
    EpisodeSchedule,
    check_num_envs,
    episode_seed,
)

__all__ = [
    "BACKENDS",
    "ActionError",
    "BackendUnavailableError",
    "BatchedEnv",
    "EpisodeSchedule",
    "UnknownEnvError",
    "cuda_available",
    "episode_seed",
    "known_env_ids",
    "make_batched",
    "resolve_backend",
]

BACKENDS = ("auto", "cpu", "gpu", "gym")


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (False when torch cannot tell)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install must not break the CPU path
        return False


def resolve_backend(backend: str) -> str:
    """The concrete backend ``backend`` names: ``auto`` is ``gpu`` with CUDA, else ``cpu``.

    Raises:
        ValueError: not one of :data:`BACKENDS`.
        BackendUnavailableError: ``gpu`` requested without a CUDA device.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "gpu" if cuda_available() else "cpu"
    if backend == "gpu" and not cuda_available():
        raise BackendUnavailableError(
            "backend='gpu' needs a CUDA device, and torch sees none: use backend='cpu' "
            "(the default on CPU-only machines) or backend='auto', which picks the GPU when present"
        )
    return backend


def make_batched(
    env_id: str, num_envs: int, backend: str = "auto", seed: int = 0, **kwargs
) -> BatchedEnv:
    """Build ``num_envs`` simulations of ``env_id`` on ``backend``.

    Args:
        env_id: a task id, one of :func:`known_env_ids`.
        num_envs: N >= 1.
        backend: ``"auto"`` (``gpu`` when CUDA is available, else ``cpu``), ``"cpu"``, ``"gpu"``
            or ``"gym"``.
        seed: env seed: episode ``j`` starts from ``episode_seed(seed, j)`` on every backend.
        **kwargs: backend options (``cpu``: ``nthread``, ``schedule``).

    Returns:
        A :class:`BatchedEnv`; call ``reset()`` before ``step()``.

    Raises:
        UnknownEnvError: unknown ``env_id`` (the message lists the known ones).
        ValueError: ``num_envs < 1`` or an unknown backend name.
        BackendUnavailableError: ``gpu`` without CUDA, or without the ``[gpu]`` extra.
    """
    task = get_task(env_id)
    check_num_envs(num_envs)
    if backend == "auto" and getattr(task, "n_actions", None) is not None:
        backend = "cpu"  # discrete-action tasks run on cpu/gym only (small models anyway)
    name = resolve_backend(backend)
    if name == "cpu":
        from choicebc.sim.cpu import CpuBatchedEnv

        return CpuBatchedEnv(env_id, num_envs, seed, **kwargs)
    if name == "gym":
        from choicebc.sim.gym_backend import GymBatchedEnv

        return GymBatchedEnv(env_id, num_envs, seed, **kwargs)
    try:
        from choicebc.sim.gpu import GpuBatchedEnv
    except ImportError as exc:
        if backend == "auto":
            from choicebc.sim.cpu import CpuBatchedEnv

            return CpuBatchedEnv(env_id, num_envs, seed, **kwargs)
        raise BackendUnavailableError(
            f"the gpu backend is not installed ({exc}): `pip install choicebc[gpu]`, "
            "or use backend='cpu'"
        ) from exc
    return GpuBatchedEnv(env_id, num_envs, seed, **kwargs)
