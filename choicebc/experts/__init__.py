"""Experts: shipped SB3-trained policies (inference weights only) and analytic controllers.

Shipped experts live in ``demos/experts/<env_id>/`` (installed as ``choicebc.demos``), each an
``actor.safetensors`` + ``card.json``; :mod:`choicebc.cards` finds them and reads their cards
(the reference returns of the normalized score).

The 2-D tasks have *analytic* experts (:data:`ANALYTIC_EXPERTS`: ``choicebc/PointReach-v0`` ->
:class:`~choicebc.envs.PointReachExpert`, ``choicebc/PointReachDiscrete-v0`` ->
:class:`~choicebc.envs.PointReachDiscreteExpert`); :func:`load_expert` builds them, and their
folder (``demos/experts/choicebc/<task>-v0/``) holds only a ``card.json`` with
``"kind": "analytic"`` and the measured returns, made by
:func:`choicebc.experts.measure.write_analytic_card`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from choicebc.cards import CARD_FILE, expert_dir, experts_root, reference_returns, shipped_experts
from choicebc.envs import (
    POINT_REACH_DISCRETE_ID,
    POINT_REACH_ID,
    PointReachDiscreteExpert,
    PointReachExpert,
)

__all__ = [
    "ANALYTIC_EXPERTS",
    "CARD_FILE",
    "ExpertLoadError",
    "ExpertPolicy",
    "expert_dir",
    "experts_root",
    "load_expert",
    "reference_returns",
    "shipped_experts",
]


def __getattr__(name: str) -> Any:
    """``ExpertPolicy`` and ``ExpertLoadError`` come from :mod:`choicebc.experts.policy`, which
    imports torch: on first use, so ``choicebc expert ... --help`` does not load torch."""
    if name in ("ExpertPolicy", "ExpertLoadError"):
        from choicebc.experts import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'choicebc.experts' has no attribute {name!r}")


ANALYTIC_EXPERTS: dict[str, type] = {
    POINT_REACH_ID: PointReachExpert,
    POINT_REACH_DISCRETE_ID: PointReachDiscreteExpert,
}
"""Env id -> analytic expert class (a batched callable; no weights)."""


def load_expert(env_id: str, path: str | Path | None = None) -> Any:
    """The expert for ``env_id``: a batched callable ``obs (N, d) -> actions (N, a)``.

    An :class:`ExpertPolicy` for the SB3-trained experts; the analytic expert of the 2-D tasks
    (:data:`ANALYTIC_EXPERTS`; ``choicebc/PointReachDiscrete-v0``'s returns ``(N,) int64``
    action ids). Every expert has ``env_id``, ``obs_dim`` and ``act_dim`` attributes.

    Args:
        env_id: task id, e.g. ``"HalfCheetah-v5"``.
        path: an expert folder to load instead of the shipped one.

    Raises:
        ExpertLoadError: when no expert is shipped for ``env_id`` (the message names the
            ``choicebc expert train`` command) or the folder is unreadable.
    """
    from choicebc.experts.policy import ExpertLoadError, ExpertPolicy

    if path is None and env_id in ANALYTIC_EXPERTS:
        return ANALYTIC_EXPERTS[env_id]()
    folder = Path(path) if path is not None else expert_dir(env_id)
    if not (folder / CARD_FILE).is_file():
        raise ExpertLoadError(
            f"no expert shipped for {env_id!r} (shipped: {shipped_experts() or 'none'}). "
            f"Train one with `choicebc expert train {env_id}` and pass its run folder's "
            f"best/ as path=..."
        )
    policy = ExpertPolicy.load(folder)
    if policy.env_id != env_id:
        raise ExpertLoadError(f"expert in {folder} is for {policy.env_id}, not {env_id}")
    return policy
