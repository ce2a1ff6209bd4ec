"""Measuring the reference returns on a card: an expert and the uniform random policy, evaluated.

The 2-D tasks' analytic experts ship only a card (no weights); :func:`write_analytic_card`
makes it: the analytic expert and :func:`random_policy` evaluated with
:func:`choicebc.evaluate` on the ``cpu`` backend, :data:`REFERENCE_EPISODES` episodes on
:data:`REFERENCE_NUM_ENVS` envs, seed :data:`REFERENCE_SEED` -- as ``choicebc expert eval``
measures the shipped SB3 experts. ``tests/test_discrete_bc.py`` re-measures the cards and
requires the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from choicebc.cards import CARD_FILE, expert_dir
from choicebc.envs import get_task, is_discrete
from choicebc.evaluation import evaluate
from choicebc.experts import ANALYTIC_EXPERTS

REFERENCE_EPISODES, REFERENCE_NUM_ENVS, REFERENCE_SEED = 100, 100, 12345
"""How the reference returns of a card are measured (as ``choicebc expert eval``'s defaults)."""


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

        python -c "from choicebc.experts.measure import ANALYTIC_EXPERTS, write_analytic_card; \\
            [write_analytic_card(e) for e in ANALYTIC_EXPERTS]"
    """
    folder = expert_dir(env_id)
    folder.mkdir(parents=True, exist_ok=True)
    from choicebc.atomic import write_json_atomic

    path = folder / CARD_FILE
    write_json_atomic(path, measure_analytic_card(env_id), sort_keys=True)
    return path
