"""Ablation of ChoiceNet's one choice per demonstration on whole bad episodes.

One demo set (``mix="episode"``, default HalfCheetah-v5, 40 % flipped episodes, 100 episodes,
seed 0) and one training budget (20,000 steps, seed 0); variants of ``choicebc.choice``:

* ``per-step``   -- ``choice="step"``: eq. (6), today's ChoiceNet-BC;
* ``naive-em``   -- one choice per episode without the growing horizon (``choice_grow`` ~ 0):
  the warm-up and the first E-step (over every episode's first step) stay, every later E-step
  counts whole episodes;
* ``no-anchor``  -- the growing horizon, without holding each mixture's rho to its value over
  the first steps (``choice_anchor=0``);
* ``default``    -- the growing horizon and the anchor (the defaults).

For each: the normalized score over ``--episodes`` evaluation episodes and the per-episode ROC
AUC of ``policy.demo_quality`` against the ground truth. Prints a markdown table and writes it
to ``--out`` (default ``results/ablation_episode_choice.md``); the run and its figures are in
docs/design-notes.md.

    python scripts/ablation_episode_choice.py
    python scripts/ablation_episode_choice.py --ratio 0.2 --variants default naive-em
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from sklearn.metrics import roc_auc_score

import choicebc as cb
from choicebc.train import TrainConfig, train_bc

VARIANTS = {
    "per-step": {"choice": "step"},
    "naive-em": {"choice": "episode", "choice_grow": 1e-9},
    "no-anchor": {"choice": "episode", "choice_anchor": 0.0},
    "default": {"choice": "episode"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env-id", default="HalfCheetah-v5")
    parser.add_argument("--adversary", default="flipped")
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--demo-episodes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default="results/ablation_episode_choice.md")
    args = parser.parse_args()

    expert = cb.load_expert(args.env_id)
    adversary = cb.make_adversary(args.adversary, expert)
    demos = cb.collect(
        args.env_id, expert, adversary, ratio=args.ratio, mix="episode",
        episodes=args.demo_episodes, seed=args.seed, progress=False,
    )  # fmt: skip
    bad = demos.adversary_share >= 0.5
    base = TrainConfig(steps=args.steps, seed=args.seed, torch_threads=args.threads)
    rows = []
    for name in args.variants:
        t0 = time.perf_counter()
        policy = train_bc(demos, config=replace(base, **VARIANTS[name]), progress=False)
        res = cb.evaluate(
            policy, args.env_id, episodes=args.episodes, num_envs=min(args.episodes, 100),
            seed=args.seed + 10_000,
        )  # fmt: skip
        auc = roc_auc_score(~bad, policy.demo_quality(demos))
        rows.append((name, res.normalized_score, auc, time.perf_counter() - t0))
        print(f"{name}: score {res.normalized_score:.1f}, per-episode AUC {auc:.3f}", flush=True)
    lines = [
        f"{args.env_id}, {args.adversary} episodes {args.ratio:.0%} ({bad.sum()} of "
        f"{demos.num_episodes} bad), {args.steps:,} steps, seed {args.seed}, "
        f"{args.episodes} evaluation episodes",
        "",
        "| variant | normalized score | per-episode ROC AUC | wall s |",
        "|---|---:|---:|---:|",
        *(f"| {n} | {s:.1f} | {a:.3f} | {w:.0f} |" for n, s, a, w in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
