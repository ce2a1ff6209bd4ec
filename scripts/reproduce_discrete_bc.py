"""Discrete-action behaviour cloning on ``choicebc/PointReachDiscrete-v0`` with flipped steps.

For each flip ratio (default 30 % and 50 %, ``mix="step"``) and seed: collect demonstrations of
the analytic expert (closest of 8 headings) where each step's action is, with probability
``ratio``, the *opposite* heading (the discrete ``flipped`` adversary); train

* ChoiceNet-BC — the eq. (9) classification head ``choicenet_cls`` (with its default CE warm-up),
* CE-BC — plain softmax cross-entropy,
* oracle — CE-BC on the clean steps only (ground-truth labels; the ceiling),

and evaluate each for ``--episodes`` episodes (normalized score: 0 = uniform random ids, 100 =
the analytic expert, from its card in ``demos/experts/choicebc/PointReachDiscrete-v0``). Also the
ROC AUC of ChoiceNet's ``data_quality`` against the ground-truth labels. Prints a markdown table
and writes it to ``--out`` (default ``results/discrete_bc.md``).

    python scripts/reproduce_discrete_bc.py                    # 3 seeds, 30 % and 50 %
    python scripts/reproduce_discrete_bc.py --ratios 0.3 --seeds 0
    python scripts/reproduce_discrete_bc.py --ratios 0.3 --ablation \\
        --out results/discrete_bc_ablation.md       # why ChoiceNet-BC warms up with CE
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from choicebc.envs import POINT_REACH_DISCRETE_ID as ENV_ID
from choicebc.envs import get_task
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

import choicebc as cb

METHODS = (
    # name, head, train on clean steps only, head_kwargs
    ("ChoiceNet-BC", "choicenet", False, None),
    ("CE-BC", "ce", False, None),
    ("oracle (CE, clean steps)", "ce", True, None),
)
ABLATION = (
    ("ChoiceNet-BC (default: 300-step CE warm-up)", "choicenet", False, None),
    ("ChoiceNet-BC, eq. (9) alone", "choicenet", False, {"lambda1": 0.0}),
    ("ChoiceNet-BC, CE kept on", "choicenet", False, {"lambda1_steps": 0}),
)


def run_one(ratio: float, seed: int, methods: tuple, args: argparse.Namespace) -> dict:
    """Scores of every method (and ChoiceNet's data-quality AUC) for one ratio and seed."""
    expert = cb.load_expert(ENV_ID)
    demos = cb.collect(
        ENV_ID, expert, "flipped", ratio=ratio, mix="step", episodes=args.demo_episodes,
        seed=seed, progress=False,
    )  # fmt: skip
    out: dict[str, float] = {"corrupt_share": float(demos.is_corrupt.mean())}
    limit = get_task(ENV_ID).max_episode_steps  # an episode shorter than this reached the goal
    for name, head, clean, head_kwargs in methods:
        cfg = cb.TrainConfig(
            head=head, steps=args.steps, hidden=tuple(args.hidden), seed=seed, clean_only=clean,
            log_every=max(1, args.steps // 4), torch_threads=1,
        )  # fmt: skip
        policy = cb.train_bc(demos, config=cfg, progress=False, head_kwargs=head_kwargs)
        res = cb.evaluate(policy, ENV_ID, episodes=args.episodes, num_envs=100, seed=1000 + seed)
        out[f"{name} score"] = float(res.normalized_score)
        out[f"{name} success"] = float(np.mean(res.lengths < limit))
        if head == "choicenet":
            quality = policy.data_quality(demos)
            out[f"{name} AUC"] = float(roc_auc_score(~demos.is_corrupt, quality))
    return out


def table(results: dict[float, list[dict]], methods: tuple, args: argparse.Namespace) -> str:
    def cell(rows: list[dict[str, float]], key: str, fmt: str) -> str:
        values = np.array([r[key] for r in rows])
        return f"{values.mean():{fmt}} ± {values.std():{fmt}}"

    names = [m[0] for m in methods]
    scored = [m[0] for m in methods if m[1] == "choicenet"]
    header = (
        ["flipped"]
        + [f"{n} score" for n in names]
        + [f"success: {' / '.join(names)}"]
        + [f"{n} data_quality ROC AUC" for n in scored]
    )
    lines = [
        f"Discrete BC on `{ENV_ID}` (9 actions: stay + 8 headings), flipped adversary (opposite "
        f"heading) at step mixing; {args.demo_episodes} demo episodes, {args.steps} steps, MLP "
        f"{'x'.join(map(str, args.hidden))}, {len(args.seeds)} seed(s) (mean ± std), each "
        f"evaluated for {args.episodes} episodes. Normalized score: 0 = uniform random ids, "
        "100 = analytic expert. Success: share of episodes reaching the goal (200-step limit).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for ratio, rows in results.items():
        success = " / ".join(f"{np.mean([r[f'{n} success'] for r in rows]):.0%}" for n in names)
        cells = (
            [f"{ratio:.0%}"]
            + [cell(rows, f"{n} score", ".1f") for n in names]
            + [success]
            + [cell(rows, f"{n} AUC", ".3f") for n in scored]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per policy")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--demo-episodes", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes")
    parser.add_argument("--out", default="results/discrete_bc.md")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="ChoiceNet-BC's CE warm-up: default vs eq. (9) alone vs CE kept on (instead of the "
        "method comparison)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    methods = ABLATION if args.ablation else METHODS

    start = time.perf_counter()
    results: dict[float, list[dict[str, float]]] = {r: [] for r in args.ratios}
    jobs = [(r, s) for r in args.ratios for s in args.seeds]
    for ratio, seed in tqdm(jobs, desc="ratio x seed"):
        results[ratio].append(run_one(ratio, seed, methods, args))
    text = table(results, methods, args)
    command = " ".join(["python", *sys.argv])
    text += f"\nWall time {time.perf_counter() - start:.0f} s. Command: `{command}`\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
