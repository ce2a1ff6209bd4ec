"""The settings of an expert training run, and the errors of settings it cannot run with.

Kept apart from :mod:`choicebc.experts.train` (SB3, torch, gymnasium) so that the CLI is built
from :class:`ExpertTrainConfig` without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALGOS = ("sac", "ppo")
OBJECTIVES = ("maximize", "minimize")


class ExpertTrainError(ValueError):
    """Expert training cannot start: a bad setting, or a run folder it cannot resume."""


class ExpertResumeError(ExpertTrainError):
    """A run folder's checkpoint cannot be resumed (old pickle format, other settings, damage)."""


@dataclass
class ExpertTrainConfig:
    """Settings of one expert training run (the CLI is generated from these fields)."""

    env_id: str
    """gymnasium env id, e.g. HalfCheetah-v5"""
    algo: str = "sac"
    """sac (default, best return per env-step) or ppo (more env-steps/s, weaker on CPU-hours)"""
    total_steps: int = 300_000
    """environment steps of learning"""
    seed: int = 0
    """seed of the env, the networks and the replay sampling"""
    out_dir: str = "runs/experts"
    """run folder parent; the run lives in OUT_DIR/ENV_ID"""
    checkpoint_every: int = 20_000
    """env steps between resumable checkpoints"""
    eval_every: int = 20_000
    """env steps between evaluations; the best exported actor is kept in best/"""
    eval_episodes: int = 5
    """episodes per periodic evaluation"""
    hidden: tuple[int, ...] = field(default=(256, 256))
    """actor and critic hidden layers"""
    torch_threads: int = 1
    """torch threads (1 lets two trainings share a 2-core machine)"""
    objective: str = "maximize"
    """maximize the task reward (an expert) or minimize it (a saboteur adversary)"""
    snapshots: bool = False
    """keep every evaluation's exported actor in snapshots/step_<N>/ (a medium demonstrator is
    picked from them: choicebc expert medium)"""
    stop_return: float | None = None
    """stop once a periodic evaluation's mean return reaches this (e.g. past a medium's band)"""


def check_config(cfg: ExpertTrainConfig) -> None:
    """Raise :class:`ExpertTrainError` on a setting training cannot run with."""
    if cfg.algo not in ALGOS:
        raise ExpertTrainError(f"unknown algo {cfg.algo!r}; choose one of {', '.join(ALGOS)}")
    if cfg.objective not in OBJECTIVES:
        raise ExpertTrainError(
            f"unknown objective {cfg.objective!r}; choose one of {', '.join(OBJECTIVES)}"
        )
    for name in ("checkpoint_every", "eval_every", "eval_episodes", "torch_threads"):
        if getattr(cfg, name) < 1:
            flag = name.replace("_", "-")
            raise ExpertTrainError(f"--{flag} must be at least 1, got {getattr(cfg, name)}")
    if cfg.total_steps < 0:
        raise ExpertTrainError(f"--total-steps must be >= 0, got {cfg.total_steps}")
    if not cfg.hidden or min(cfg.hidden) < 1:
        raise ExpertTrainError(f"--hidden needs positive layer sizes, got {cfg.hidden}")
