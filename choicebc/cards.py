"""Where shipped policies live and what their cards say: the two ends of the normalized score.

Shipped experts live in ``demos/experts/<env_id>/`` (installed as ``choicebc.demos``), each with
a ``card.json`` recording how the expert was trained and its measured return over 100
evaluation episodes next to the random policy's. Reading a card needs neither torch nor the
weights, so :func:`choicebc.evaluate` can attach the reference returns to every result.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

CARD_FILE = "card.json"
"""An expert folder's JSON card (:mod:`choicebc.experts.policy` writes it beside the weights)."""


def experts_root() -> Path:
    """Folder holding the shipped experts (``demos/experts`` of the source tree)."""
    return Path(str(resources.files("choicebc.demos"))) / "experts"


def shipped_experts() -> list[str]:
    """Env ids that have a shipped expert (SB3 weights or an analytic expert's card)."""
    root = experts_root()
    if not root.is_dir():
        return []
    # env ids may contain a "/" (``choicebc/PointReach-v0``): their folders are nested
    return sorted(p.parent.relative_to(root).as_posix() for p in root.rglob(CARD_FILE))


def expert_dir(env_id: str) -> Path:
    """The shipped expert folder of ``env_id`` (it may not exist)."""
    return experts_root() / env_id


def shipped_dir(kind: str, env_id: str) -> Path:
    """Folder of a shipped policy of another ``kind`` than expert: ``demos/<kind>/<env_id>``."""
    return experts_root().parent / kind / env_id


def saboteur_dir(env_id: str) -> Path:
    """Folder of the shipped saboteur for ``env_id``: ``demos/saboteurs/<env_id>``."""
    return shipped_dir("saboteurs", env_id)


def medium_dir(env_id: str) -> Path:
    """Folder of the shipped medium demonstrator for ``env_id``: ``demos/mediums/<env_id>``."""
    return shipped_dir("mediums", env_id)


def read_card(env_id: str) -> dict[str, Any] | None:
    """The shipped expert's card of ``env_id`` as a dict, or ``None`` (no card, unreadable)."""
    try:
        card = json.loads((expert_dir(env_id) / CARD_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return card if isinstance(card, dict) else None


def reference_returns(env_id: str) -> tuple[float, float] | None:
    """``(random_return, expert_return)`` from the shipped expert's card, or ``None``.

    These are the 0 and 100 of the normalized score (D4RL convention).
    """
    card = read_card(env_id)
    if card is None or "random_mean_return" not in card or "expert_mean_return" not in card:
        return None
    return float(card["random_mean_return"]), float(card["expert_mean_return"])
