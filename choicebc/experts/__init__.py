"""Experts: shipped SB3-trained policies (inference weights only) and analytic controllers.

Shipped experts live in ``demos/experts/<env_id>/`` (installed as ``choicebc.demos``), each an
``actor.safetensors`` + ``card.json``. The card records how the expert was trained and its
measured return over 100 evaluation episodes next to the random policy's — the two ends of the
normalized score.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from choicebc.experts.policy import ExpertLoadError, ExpertPolicy

__all__ = [
    "ExpertLoadError",
    "ExpertPolicy",
    "expert_dir",
    "load_expert",
    "reference_returns",
    "shipped_experts",
]


def experts_root() -> Path:
    """Folder holding the shipped experts (``demos/experts`` of the source tree)."""
    return Path(str(resources.files("choicebc.demos"))) / "experts"


def shipped_experts() -> list[str]:
    """Env ids that have a shipped expert."""
    root = experts_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "card.json").is_file())


def expert_dir(env_id: str) -> Path:
    return experts_root() / env_id


def load_expert(env_id: str, path: str | Path | None = None) -> ExpertPolicy:
    """The expert for ``env_id``: a batched callable ``obs (N, d) -> actions (N, a)``.

    Args:
        env_id: task id, e.g. ``"HalfCheetah-v5"``.
        path: an expert folder to load instead of the shipped one.

    Raises:
        ExpertLoadError: when no expert is shipped for ``env_id`` (the message names the
            ``choicebc expert train`` command) or the folder is unreadable.
    """
    folder = Path(path) if path is not None else expert_dir(env_id)
    if not (folder / "card.json").is_file():
        raise ExpertLoadError(
            f"no expert shipped for {env_id!r} (shipped: {shipped_experts() or 'none'}). "
            f"Train one with `choicebc expert train {env_id}` and pass its run folder's "
            f"best/ as path=..."
        )
    policy = ExpertPolicy.load(folder)
    if policy.env_id != env_id:
        raise ExpertLoadError(f"expert in {folder} is for {policy.env_id}, not {env_id}")
    return policy


def reference_returns(env_id: str) -> tuple[float, float] | None:
    """``(random_return, expert_return)`` from the shipped expert's card, or ``None``.

    These are the 0 and 100 of the normalized score (D4RL convention).
    """
    try:
        card = ExpertPolicy.load(expert_dir(env_id)).card
    except ExpertLoadError:
        return None
    if "random_mean_return" not in card or "expert_mean_return" not in card:
        return None
    return float(card["random_mean_return"]), float(card["expert_mean_return"])
