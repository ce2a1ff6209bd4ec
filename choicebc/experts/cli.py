"""``choicebc expert train|eval``."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from choicebc.experts import expert_dir, load_expert
from choicebc.experts.config import ExpertTrainConfig, ExpertTrainError
from choicebc.flags import add_dataclass_arguments, dataclass_from_args

if TYPE_CHECKING:
    from choicebc.experts.policy import ExpertPolicy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="expert_command", metavar="{train,eval,medium}", required=True)
    train = sub.add_parser("train", help="train (or resume) an expert with stable-baselines3")
    add_dataclass_arguments(train, ExpertTrainConfig)
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev = sub.add_parser(
        "eval",
        help="measure an expert and the random policy with the batched evaluator; "
        "--ship writes the card and weights into demos/experts/ENV_ID (a saboteur's, trained with "
        "--objective minimize, into demos/saboteurs/ENV_ID)",
    )
    ev.add_argument("env_id", help="task id, e.g. HalfCheetah-v5")
    ev.add_argument("--path", help="expert folder (default: the shipped one)")
    ev.add_argument("--episodes", type=int, default=100, help="evaluation episodes (default 100)")
    ev.add_argument("--num-envs", type=int, default=100, help="parallel simulations")
    ev.add_argument("--seed", type=int, default=12345, help="evaluation seed")
    ev.add_argument("--ship", action="store_true", help="write card + weights to demos/experts")
    md = sub.add_parser(
        "medium",
        help="pick a medium demonstrator (30-60 %% of the expert's return) from the snapshots "
        "of a re-run of the expert's training and ship it to demos/mediums/ENV_ID",
    )
    md.add_argument("env_id", help="task id, e.g. HalfCheetah-v5")
    md.add_argument(
        "--run-dir", required=True, help="run folder of `expert train --snapshots` (its parent)"
    )
    md.add_argument("--episodes", type=int, default=100, help="evaluation episodes (default 100)")
    md.add_argument("--num-envs", type=int, default=100, help="parallel simulations")
    md.add_argument("--seed", type=int, default=12345, help="evaluation seed")
    md.add_argument("--dry-run", action="store_true", help="measure and print, ship nothing")


def measure_expert(policy: ExpertPolicy, episodes: int, num_envs: int, seed: int) -> dict:
    """Card fields: expert and random-policy returns over ``episodes`` evaluation episodes."""
    from choicebc.evaluation import evaluate
    from choicebc.experts.measure import random_policy

    env_id = policy.env_id
    expert = evaluate(policy, env_id, episodes=episodes, num_envs=num_envs, seed=seed)
    rand = evaluate(
        random_policy(env_id, seed), env_id, episodes=episodes, num_envs=num_envs, seed=seed
    )
    return {
        "expert_mean_return": float(expert.mean_return),
        "expert_std_return": float(expert.std_return),
        "expert_mean_length": float(np.mean(expert.lengths)),
        "random_mean_return": float(rand.mean_return),
        "random_std_return": float(rand.std_return),
        "eval_episodes": episodes,
        "eval_seed": seed,
        "eval_backend": "cpu",
    }


def run(args: argparse.Namespace) -> int:
    if args.expert_command == "train":
        from choicebc.experts.train import train_expert

        cfg = dataclass_from_args(ExpertTrainConfig, args)
        try:
            policy = train_expert(cfg, progress=not args.no_progress)
        except ExpertTrainError as exc:
            print(f"choicebc expert train: {exc}", file=sys.stderr)
            return 2
        print(f"best expert: {policy.card.get('train_eval_mean_return')} (run dir {cfg.out_dir})")
        return 0
    if args.expert_command == "medium":
        return _medium(args)
    policy = load_expert(args.env_id, path=args.path)
    card = measure_expert(policy, args.episodes, args.num_envs, args.seed)
    for key, value in card.items():
        print(f"{key}: {value}")
    if args.ship:
        policy.card.update(card)
        if policy.card.get("objective", "maximize") == "minimize":  # a saboteur adversary
            from choicebc.cards import saboteur_dir

            target = saboteur_dir(args.env_id)
        else:
            target = expert_dir(args.env_id)
        if args.path and Path(args.path).resolve() != target.resolve():
            shutil.rmtree(target, ignore_errors=True)
        policy.save(target)
        print(f"shipped to {target}")
    return 0


def _medium(args: argparse.Namespace) -> int:
    from choicebc.cards import medium_dir
    from choicebc.experts.medium import MediumError, pick_medium

    if args.episodes < 1 or args.num_envs < 1:
        print("choicebc expert medium: --episodes and --num-envs must be >= 1", file=sys.stderr)
        return 2
    try:
        policy, rows = pick_medium(
            args.env_id, args.run_dir, args.episodes, args.num_envs, args.seed
        )
    except (MediumError, OSError, ValueError) as exc:
        print(f"choicebc expert medium: {exc}", file=sys.stderr)
        return 2
    print("| step | mean return | share of expert | normalized score |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['step']:,} | {r['mean_return']:.0f} ± {r['std_return']:.0f} | "
            f"{r['expert_return_share']:.3f} | {r['normalized_score']:.1f} |"
        )
    print(f"chosen: step {policy.card['source_step']:,}")
    if not args.dry_run:
        target = medium_dir(args.env_id)
        shutil.rmtree(target, ignore_errors=True)
        policy.save(target)
        print(f"shipped to {target}")
    return 0
