"""Medium demonstrators: a snapshot of the expert's own SAC training at 30-60 % of its return.

D4RL's "medium" datasets come from a policy stopped at about a third of the expert's score:
competent, consistent and worse -- the operator multi-operator datasets hold most often. Here a
medium is picked from the snapshots a re-run of the expert's training keeps
(``choicebc expert train ENV --seed <card seed> --snapshots``): every snapshot whose training-time
evaluation lies near the band is measured with the batched evaluator, and the one whose mean
return is closest to the middle of the band is shipped to ``demos/mediums/<env_id>`` with a
card that says where it comes from and what it scores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

BAND = (0.3, 0.6)
"""share of the shipped expert's mean return a medium demonstrator's mean return lies in"""


class MediumError(ValueError):
    """No snapshot fits, or the run folder is not a snapshot run (the message says why)."""


def snapshots(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every snapshot in ``run_dir/snapshots``, by step."""
    found = []
    for folder in Path(run_dir, "snapshots").glob("step_*"):
        match = re.fullmatch(r"step_(\d+)", folder.name)
        if match and (folder / "card.json").is_file():
            found.append((int(match.group(1)), folder))
    return sorted(found)


def pick_medium(
    env_id: str,
    run_dir: str | Path,
    episodes: int = 100,
    num_envs: int = 100,
    seed: int = 12345,
    band: tuple[float, float] = BAND,
    progress: bool = True,
) -> tuple[Any, list[dict[str, Any]]]:
    """The snapshot of ``run_dir`` to ship as ``env_id``'s medium demonstrator.

    Snapshots whose training-time evaluation (a few episodes) is within the band widened by
    0.05 on each side are measured over ``episodes`` episodes (seed ``seed``, as the experts'
    cards); the one whose mean return, as a share of the shipped expert's, is closest to the
    middle of ``band`` and inside it wins.

    Returns:
        The chosen :class:`~choicebc.experts.ExpertPolicy` with its card completed, and one
        row per measured snapshot (step, mean return, share of the expert's, normalized score).

    Raises:
        MediumError: no snapshots, another env's run, or no snapshot inside the band.
    """
    from choicebc.evaluation import evaluate
    from choicebc.experts import load_expert
    from choicebc.experts.policy import ExpertPolicy

    expert = load_expert(env_id)
    expert_return = float(expert.card["expert_mean_return"])
    random_return = float(expert.card["random_mean_return"])
    found = snapshots(run_dir)
    if not found:
        raise MediumError(
            f"no snapshots in {Path(run_dir) / 'snapshots'}: re-run the expert's training with "
            f"`choicebc expert train {env_id} --seed {expert.card.get('seed', 0)} --snapshots`"
        )
    lo, hi = band
    rows, best = [], None
    for step, folder in found:
        policy = ExpertPolicy.load(folder)
        if policy.env_id != env_id:
            raise MediumError(f"{folder} is a snapshot of {policy.env_id}, not {env_id}")
        share = float(policy.card["train_eval_mean_return"]) / expert_return
        if not lo - 0.05 <= share <= hi + 0.05:
            continue
        res = evaluate(
            policy,
            env_id,
            episodes=episodes,
            num_envs=num_envs,
            seed=seed,
            progress=f"snapshot {step}" if progress else False,
        )
        share = float(res.mean_return) / expert_return
        row = {
            "step": step,
            "mean_return": float(res.mean_return),
            "std_return": float(res.std_return),
            "mean_length": float(res.lengths.mean()),
            "expert_return_share": share,
            "normalized_score": 100
            * (res.mean_return - random_return)
            / (expert_return - random_return),
        }
        rows.append(row)
        if lo <= share <= hi and (
            best is None
            or abs(share - (lo + hi) / 2) < abs(best[1]["expert_return_share"] - (lo + hi) / 2)
        ):
            best = (policy, row)
    if best is None:
        raise MediumError(
            f"no snapshot of {run_dir} returns {lo:.0%}-{hi:.0%} of the expert's "
            f"{expert_return:.0f} over {episodes} episodes (measured: "
            f"{json.dumps([(r['step'], round(r['expert_return_share'], 3)) for r in rows])}); "
            "train further, or snapshot more often"
        )
    policy, row = best
    policy.card.update(
        {
            "kind": "medium",
            "source_step": row["step"],
            "source_run": str(run_dir),
            "mean_return": row["mean_return"],
            "std_return": row["std_return"],
            "mean_length": row["mean_length"],
            "expert_return_share": row["expert_return_share"],
            "normalized_score": row["normalized_score"],
            "expert_mean_return": expert_return,
            "random_mean_return": random_return,
            "eval_episodes": episodes,
            "eval_seed": seed,
            "eval_backend": "cpu",
        }
    )
    return policy, rows
