"""Experts: shipped SB3-trained policies (inference weights only) and analytic controllers.

Shipped experts live in ``demos/experts/<env_id>/`` (installed as ``choicebc.demos``), each an
``actor.safetensors`` + ``card.json``. The card records how the expert was trained and its
measured return over 100 evaluation episodes next to the random policy's — the two ends of the
normalized score.

The 2-D tasks have *analytic* experts (:data:`ANALYTIC_EXPERTS`: ``choicebc/PointReach-v0`` ->
:class:`~choicebc.envs.PointReachExpert`, ``choicebc/PointReachDiscrete-v0`` ->
:class:`~choicebc.envs.PointReachDiscreteExpert`); :func:`load_expert` builds them, and their
folder (``demos/experts/choicebc/<task>-v0/``) holds only a ``card.json`` with
``"kind": "analytic"`` and the measured returns. The card is made by
:func:`write_analytic_card` — the analytic expert and the uniform random policy
(:func:`random_policy`) evaluated with :func:`choicebc.evaluate` on the ``cpu`` backend, 100
episodes, 100 envs, seed 12345, as ``choicebc expert eval`` measures the shipped SB3 experts —
and ``tests/test_discrete_bc.py`` re-measures it and requires the same numbers.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from choicebc.envs import (
    POINT_REACH_DISCRETE_ID,
    POINT_REACH_ID,
    PointReachDiscreteExpert,
    PointReachExpert,
    get_task,
    is_discrete,
)

CARD_FILE = "card.json"
"""An expert folder's JSON card (:mod:`choicebc.experts.policy` writes it beside the weights)."""

__all__ = [
    "ANALYTIC_EXPERTS",
    "ExpertLoadError",
    "ExpertPolicy",
    "expert_dir",
    "load_expert",
    "measure_analytic_card",
    "random_policy",
    "reference_returns",
    "shipped_experts",
    "write_analytic_card",
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

REFERENCE_EPISODES, REFERENCE_NUM_ENVS, REFERENCE_SEED = 100, 100, 12345
"""How the reference returns of a card are measured (as ``choicebc expert eval``'s defaults)."""


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
    return experts_root() / env_id


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

    These are the 0 and 100 of the normalized score (D4RL convention). Analytic experts' cards
    are read as plain JSON (they have no weights).
    """
    from choicebc.experts.policy import ExpertLoadError, ExpertPolicy

    try:
        if env_id in ANALYTIC_EXPERTS:
            card = json.loads((expert_dir(env_id) / CARD_FILE).read_text())
        else:
            card = ExpertPolicy.load(expert_dir(env_id)).card
    except (ExpertLoadError, OSError, json.JSONDecodeError):
        return None
    if "random_mean_return" not in card or "expert_mean_return" not in card:
        return None
    return float(card["random_mean_return"]), float(card["expert_mean_return"])


def random_policy(env_id: str, seed: int) -> Any:
    """The 0 of the normalized score: uniform actions in the task's box, or uniform action ids
    ``(N,) int64`` on a discrete task; seeded, one generator for the whole evaluation."""
    task = get_task(env_id)
    rng = np.random.default_rng(seed)
    if is_discrete(task):
        return lambda obs: rng.integers(0, task.n_actions, size=len(obs), dtype=np.int64)
    low, high = task.action_low, task.action_high
    return lambda obs: rng.uniform(low, high, size=(len(obs), len(low))).astype(np.float32)


def measure_analytic_card(env_id: str) -> dict[str, Any]:
    """The card of an analytic expert: its returns and the random policy's, measured now.

    Both are evaluated with :func:`choicebc.evaluate` (``cpu`` backend,
    :data:`REFERENCE_EPISODES` episodes on :data:`REFERENCE_NUM_ENVS` envs, seed
    :data:`REFERENCE_SEED`); deterministic, so a re-measurement gives the same numbers.

    Raises:
        ExpertLoadError: ``env_id`` has no analytic expert.
    """
    import gymnasium
    import mujoco

    from choicebc.evaluation import evaluate
    from choicebc.experts.policy import ExpertLoadError

    if env_id not in ANALYTIC_EXPERTS:
        raise ExpertLoadError(
            f"{env_id!r} has no analytic expert (those are {', '.join(ANALYTIC_EXPERTS)}); "
            f"measure an SB3 expert with `choicebc expert eval {env_id}`"
        )
    expert = ANALYTIC_EXPERTS[env_id]()
    kw = {"episodes": REFERENCE_EPISODES, "num_envs": REFERENCE_NUM_ENVS, "backend": "cpu"}
    ex = evaluate(expert, env_id, seed=REFERENCE_SEED, **kw)
    rand = evaluate(random_policy(env_id, REFERENCE_SEED), env_id, seed=REFERENCE_SEED, **kw)
    return {
        "kind": "analytic",
        "env_id": env_id,
        "expert": repr(expert),
        "obs_dim": int(expert.obs_dim),
        "act_dim": int(expert.act_dim),
        "expert_mean_return": ex.mean_return,
        "expert_std_return": ex.std_return,
        "expert_mean_length": ex.mean_length,
        "expert_success_rate": float(np.mean(ex.lengths < get_task(env_id).max_episode_steps)),
        "random_mean_return": rand.mean_return,
        "random_std_return": rand.std_return,
        "random_policy": "uniform ids" if is_discrete(get_task(env_id)) else "uniform in the box",
        "eval_episodes": REFERENCE_EPISODES,
        "eval_num_envs": REFERENCE_NUM_ENVS,
        "eval_seed": REFERENCE_SEED,
        "eval_backend": "cpu",
        "versions": {"gymnasium": gymnasium.__version__, "mujoco": mujoco.__version__},
    }


def write_analytic_card(env_id: str) -> Path:
    """Measure (:func:`measure_analytic_card`) and write ``demos/experts/<env_id>/card.json``.

    Regenerate both cards with::

        python -c "from choicebc.experts import ANALYTIC_EXPERTS, write_analytic_card as w; \\
            [w(e) for e in ANALYTIC_EXPERTS]"
    """
    folder = expert_dir(env_id)
    folder.mkdir(parents=True, exist_ok=True)
    from choicebc.atomic import write_json_atomic

    path = folder / CARD_FILE
    write_json_atomic(path, measure_analytic_card(env_id), sort_keys=True)
    return path
